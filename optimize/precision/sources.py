"""Calibration data sources, streamed batch by batch: an image folder, .npy/.npz, `digits`, `random`.

Every source yields float32 batches (B, C, H, W) checked against the model's input; none holds more than one
batch at a time (a .npy is read batch by batch; a .npz member is read whole, so prefer .npy for large sets).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.preprocess import IMAGE_SUFFIXES, Preprocess, load_image
from onebyone.runtime.core.errors import UserError

RANDOM_SEED = 0
RANDOM_SAMPLES = 64  # default count for `random`, which has no natural size
SOURCES_HELP = "an image folder, a .npy/.npz file, `digits` (the calibration split) or `random` (smoke test only)"


@dataclasses.dataclass(frozen=True)
class CalibrationData:
    """`count` samples, delivered in batches by `read(start, stop)`; `description` says what they are."""

    description: str
    count: int
    read: Callable[[int, int], np.ndarray]
    smoke_only: bool = False

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.count, batch_size):
            yield self.read(start, min(start + batch_size, self.count))


def open_source(spec: str, sample_shape: tuple[int | None, ...], preprocess: Preprocess | None,
                samples: int | None, input_name: str) -> CalibrationData:
    """The source named by `spec`, limited to `samples` (all when None), its samples checked to be `sample_shape`
    (C, H, W; None where the model's dimension is dynamic)."""
    data = _open(spec, sample_shape, preprocess, input_name, samples)
    if data.count == 0:
        raise UserError(f"calibration source {spec} holds no samples")
    if samples is not None:
        data = dataclasses.replace(data, count=min(samples, data.count))
    return _checked(data, sample_shape)


def _open(spec: str, sample_shape: tuple[int | None, ...], preprocess: Preprocess | None, input_name: str,
          samples: int | None) -> CalibrationData:
    if spec == "digits":
        from onebyone.runtime.bundle.digits import digits_splits

        images = digits_splits()["calib"].images
        return CalibrationData(f"sklearn digits, calibration split ({len(images)} images, disjoint from test)",
                               len(images), lambda start, stop: images[start:stop])
    if spec == "random":
        return _random(sample_shape, samples or RANDOM_SAMPLES)
    path = Path(spec)
    if path.is_dir():
        return _image_folder(path, preprocess)
    if path.suffix == ".npy" and path.is_file():
        return _npy(path)
    if path.suffix == ".npz" and path.is_file():
        return _array(_npz_member(path, input_name), str(path))
    if path.exists():
        raise UserError(f"calibration source {spec} is neither a folder nor a .npy/.npz file; use {SOURCES_HELP}")
    raise UserError(f"calibration source {spec} does not exist; use {SOURCES_HELP}")


def _random(sample_shape: tuple[int | None, ...], count: int) -> CalibrationData:
    if any(dim is None for dim in sample_shape):
        raise UserError("`--calib random` needs a model with a fixed input shape (C, H, W); pass real data")

    def read(start: int, stop: int) -> np.ndarray:
        rng = np.random.default_rng([RANDOM_SEED, start])
        return rng.standard_normal((stop - start, *sample_shape), dtype=np.float32)

    return CalibrationData("random N(0,1) inputs — a smoke test, NOT a calibration: ranges will not fit real data",
                           count, read, smoke_only=True)


def _image_folder(folder: Path, preprocess: Preprocess | None) -> CalibrationData:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"calibration folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    if preprocess is None:
        raise UserError("the model carries no preprocessing metadata, so images cannot be turned into inputs; "
                        "preprocess them yourself into a .npy (N, C, H, W) and pass that")
    return CalibrationData(f"{len(files)} images from {folder}", len(files),
                           lambda start, stop: np.stack([load_image(p, preprocess) for p in files[start:stop]]))


def _npz_member(path: Path, input_name: str) -> np.ndarray:
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    with archive:
        names = archive.files
        for key in (input_name, "inputs"):
            if key in names:
                return archive[key]
        if len(names) == 1:
            return archive[names[0]]
    raise UserError(f"{path} holds arrays {names}; name the calibration inputs {input_name!r} or 'inputs'")


def _npy(path: Path) -> CalibrationData:
    """A .npy read batch by batch with plain file reads: a memory map would keep every page it touched resident,
    so memory would grow with the samples read."""
    try:
        with path.open("rb") as stream:
            major, _ = np.lib.format.read_magic(stream)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(stream)
            offset = stream.tell()
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    _check_float(dtype, str(path))
    if fortran_order or not shape:
        raise UserError(f"{path} must hold a C-ordered N×C×H×W array")
    sample_items = int(np.prod(shape[1:], dtype=np.int64))

    def read(start: int, stop: int) -> np.ndarray:
        with path.open("rb") as stream:
            stream.seek(offset + start * sample_items * dtype.itemsize)
            values = np.fromfile(stream, dtype=dtype, count=(stop - start) * sample_items)
        return values.reshape(stop - start, *shape[1:]).astype(np.float32, copy=False)

    return CalibrationData(f"{shape[0]} samples from {path}", shape[0], read)


def _check_float(dtype: np.dtype, origin: str) -> None:
    if not np.issubdtype(dtype, np.floating):
        raise UserError(f"{origin} holds {dtype} data; calibration needs model-ready float inputs "
                        "(preprocessed and normalised, N×C×H×W)")


def _array(array: np.ndarray, origin: str) -> CalibrationData:
    _check_float(array.dtype, origin)
    return CalibrationData(f"{len(array)} samples from {origin}", len(array),
                           lambda start, stop: np.ascontiguousarray(array[start:stop], dtype=np.float32))


def _checked(data: CalibrationData, sample_shape: tuple[int | None, ...]) -> CalibrationData:
    """Wrap `read` so every batch is checked: (B, C, H, W) matching the model, finite."""

    def read(start: int, stop: int) -> np.ndarray:
        batch = data.read(start, stop)
        shape = tuple(batch.shape[1:])
        expected = "×".join("?" if d is None else str(d) for d in sample_shape)
        if len(shape) != len(sample_shape):
            raise UserError(f"calibration samples have shape {'×'.join(map(str, shape))}; the model takes "
                            f"{expected} per sample")
        if sample_shape and sample_shape[0] is not None and shape[0] != sample_shape[0]:
            raise UserError(f"calibration samples have {shape[0]} channels; the model takes {sample_shape[0]} "
                            f"({expected} per sample)")
        if any(want is not None and got != want for got, want in zip(shape, sample_shape, strict=True)):
            raise UserError(f"calibration samples have shape {'×'.join(map(str, shape))}; the model takes "
                            f"{expected} per sample")
        if not np.isfinite(batch).all():
            raise UserError(f"calibration samples {start}…{stop - 1} contain NaN or Inf")
        return batch

    return dataclasses.replace(data, read=read)


def calibration_labels(spec: str, count: int) -> np.ndarray | None:
    """Labels for the first `count` calibration samples, where the source has them: `digits` (its calibration
    split) or a .npz with a `labels` array; None otherwise."""
    if spec == "digits":
        from onebyone.runtime.bundle.digits import digits_splits

        return digits_splits()["calib"].labels[:count]
    if spec.endswith(".npz"):
        with np.load(spec, allow_pickle=False) as archive:
            return archive["labels"][:count] if "labels" in archive.files else None
    return None
