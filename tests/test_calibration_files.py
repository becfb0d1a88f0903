"""calib.json and the legacy TensorRT cache; calibration sources (image folder, arrays) and their checks."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from PIL import Image

from onebyone.optimize.precision.flavours import MIN_SCALE
from onebyone.optimize.precision.trt_cache import cache_text, version_number
from onebyone.runtime.bundle.preprocess import Preprocess, load_image
from onebyone.runtime.bundle.sources import open_source
from onebyone.runtime.core.errors import UserError
from tests.formats import parse_cache

GRAY = Preprocess(resize=8, crop=8, mean=(0.5,), std=(0.5,), mode="L")


def test_version_numbers_follow_nvinferversion():
    assert version_number("8.6.1") == 8601 and version_number("7.2.2") == 7202
    assert version_number("10.3.0") == 100300 and version_number("10.13") == 101300


def test_cache_round_trip_is_bit_exact(rng):
    amax = {f"tensor/{i}:0": float(np.float32(v)) for i, v in enumerate(rng.lognormal(0, 3, 200))}
    header, scales = parse_cache(cache_text(amax, "10.13.0"))
    assert header == "TRT-101300-EntropyCalibration2"
    assert scales.keys() == amax.keys()
    for name, value in amax.items():
        expected = np.float32(max(value / 127, MIN_SCALE))  # the floor scale (flavours.py) below 1.5e-5
        assert struct.pack(">f", scales[name]) == struct.pack(">f", expected), name


def test_cache_scale_is_the_big_endian_float_bits():
    """1.0 is 0x3f800000 in IEEE-754 float32: amax 127 → scale 1 → `3f800000`."""
    assert cache_text({"x": 127.0}, "8.6.1").splitlines() == ["TRT-8601-EntropyCalibration2", "x: 3f800000"]


def digits_pixels(rng: np.random.Generator, count: int) -> np.ndarray:
    return rng.integers(0, 256, (count, 8, 8), dtype=np.uint8)


def test_image_folder_equals_the_same_pixels_as_an_array(tmp_path, rng):
    pixels = digits_pixels(rng, 5)
    for i, image in enumerate(pixels):
        Image.fromarray(image, mode="L").save(tmp_path / f"{i}.png")
    expected = ((pixels / 255.0 - 0.5) / 0.5).astype(np.float32)[:, None]
    np.save(tmp_path.parent / "same.npy", expected)
    folder = open_source(str(tmp_path), (1, 8, 8), GRAY, None, "input")
    array = open_source(str(tmp_path.parent / "same.npy"), (1, 8, 8), GRAY, None, "input")
    assert folder.count == array.count == 5
    for from_images, from_array in zip(folder.batches(2), array.batches(2), strict=True):
        np.testing.assert_allclose(from_images, from_array, atol=1e-6)


def test_image_preprocessing_centre_crops_the_longer_side(tmp_path):
    """An 8-wide, 16-high image already has its shorter side at `resize`: no resampling, rows 4–11 are kept."""
    rows = np.repeat(np.arange(16, dtype=np.uint8)[:, None] * 16, 8, axis=1)
    Image.fromarray(rows, mode="L").save(tmp_path / "tall.png")
    tensor = load_image(tmp_path / "tall.png", GRAY)
    np.testing.assert_allclose(tensor[0], (rows[4:12] / 255.0 - 0.5) / 0.5, atol=1e-6)


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: np.save(d / "x.npy", np.zeros((4, 3, 8, 8), np.float32)), "have 3 channels; the model takes 1"),
    (lambda d: np.save(d / "x.npy", np.zeros((4, 1, 9, 8), np.float32)), "shape 1×9×8; the model takes 1×8×8"),
    (lambda d: np.save(d / "x.npy", np.zeros((4, 8, 8), np.float32)), "shape 8×8; the model takes 1×8×8"),
    (lambda d: np.save(d / "x.npy", np.zeros((4, 1, 8, 8), np.uint8)), "holds uint8 data"),
    (lambda d: np.save(d / "x.npy", np.full((4, 1, 8, 8), np.nan, np.float32)), "contain NaN or Inf"),
    (lambda d: np.save(d / "x.npy", np.zeros((0, 1, 8, 8), np.float32)), "holds no samples"),
    (lambda d: np.savez(d / "x.npz", a=np.zeros(3), b=np.zeros(3)), "name the inputs 'input' or 'inputs'"),
])
def test_bad_arrays_are_named(make, message, tmp_path):
    make(tmp_path)
    source = next(tmp_path.iterdir())
    with pytest.raises(UserError, match=message):
        data = open_source(str(source), (1, 8, 8), GRAY, None, "input")
        next(data.batches(4))


def test_empty_folder_and_missing_source(tmp_path):
    with pytest.raises(UserError, match=r"holds no \.png/\.jpg/\.jpeg images"):
        open_source(str(tmp_path), (1, 8, 8), GRAY, None, "input")
    with pytest.raises(UserError, match="no such file or folder"):
        open_source(str(tmp_path / "nope"), (1, 8, 8), GRAY, None, "input")


def test_random_source_is_marked_smoke_only():
    data = open_source("random", (1, 8, 8), GRAY, None, "input")
    assert data.smoke_only and data.count == 64 and "NOT a calibration" in data.description


def test_calibration_and_parity_read_two_distinct_digits_splits():
    """digits-calibration and digits-test are disjoint splits of sklearn's digits, each with its labels; plain
    `digits` is the calibration split unless a command (parity) says otherwise."""
    from sklearn.datasets import load_digits

    calibration = open_source("digits-calibration", (1, 8, 8), None, None, "input")
    test = open_source("digits-test", (1, 8, 8), None, None, "input")
    assert (calibration.count, test.count) == (180, 360)
    pixels = load_digits().images.reshape(len(load_digits().images), -1)
    rows = {tuple(((p / 16.0 - 0.5) / 0.5).astype(np.float32)) for p in pixels}
    seen_calibration = {tuple(x.ravel()) for x in calibration.all()}
    seen_test = {tuple(x.ravel()) for x in test.all()}
    assert seen_calibration <= rows and seen_test <= rows and not seen_calibration & seen_test
    assert len(calibration.labels) == 180 and len(test.labels) == 360
    assert open_source("digits", (1, 8, 8), None, None, "input").description == calibration.description
    assert open_source("digits", (1, 8, 8), None, 5, "input", digits="digits-test").labels.tolist() == \
        test.labels[:5].tolist()
