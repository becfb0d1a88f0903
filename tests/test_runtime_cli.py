"""`onebyone infer` and `onebyone bench` on digits_resnet, against the torch session and sklearn's labels."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import onebyone.runtime.sessions.opening as sessions
from onebyone.runtime.bundle.digits import PREPROCESS, digits_splits
from onebyone.runtime.bundle.preprocess import load_image
from onebyone.runtime.commands.samples import write_digit_images
from tests.helpers import files_under

IMAGE_TOLERANCE = 1 / 510 / 0.5  # a PNG stores ink to 1/255 (±1/510), normalisation divides by std 0.5


@pytest.fixture(scope="module")
def bundle(bundle_copy) -> Path:
    return bundle_copy("digits_resnet")


@pytest.fixture(scope="module")
def digit_images(tmp_path_factory) -> list[Path]:
    return write_digit_images(tmp_path_factory.mktemp("digits"), 6)


def test_sample_images_read_back_as_the_test_split(digit_images):
    test = digits_splits()["test"]
    for index, path in enumerate(digit_images):
        assert path.name == f"digit-{index:03d}-label-{test.labels[index]}.png"
        assert np.abs(load_image(path, PREPROCESS) - test.images[index]).max() <= IMAGE_TOLERANCE + 1e-6


def test_infer_prints_top_k_matching_the_torch_model_and_saves_outputs(bundle, digit_images, cli, tmp_path):
    out = tmp_path / "logits.npy"
    code, stdout, err = cli("infer", bundle / "model.onnx", "--input", *digit_images, "--top-k", "3", "-o", out)
    assert code == 0, err
    assert "self-check PASS" in stdout
    with sessions.open(bundle, backend="torch") as reference:
        preprocess = reference.model.preprocess
        batch = np.stack([load_image(path, preprocess) for path in digit_images])
        expected = reference.run(batch)["logits"]
    saved = np.load(out)
    assert saved.shape == expected.shape and np.isfinite(saved).all()
    assert np.abs(saved - expected).max() <= 1e-4 * np.abs(expected).max()
    lines = [line for line in stdout.splitlines() if line.startswith("digit-")]
    assert len(lines) == len(digit_images)
    for line, path, logits in zip(lines, digit_images, expected, strict=True):
        classes = [int(c) for c in re.findall(r"\d\. class (\d+) ", line)]
        assert line.startswith(path.name) and classes == list(np.argsort(-logits)[:3])
        probabilities = [float(p) for p in re.findall(r"class \d+ ([0-9.]+)", line)]
        softmax = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(probabilities, np.sort(softmax)[::-1][:3], atol=1e-4)
    labels = [int(path.stem.rsplit("-", 1)[1]) for path in digit_images]
    assert sum(np.argmax(expected, 1) == labels) >= len(labels) - 1  # the model is 99% accurate


def test_infer_takes_npy_batches_and_single_samples(bundle, cli, tmp_path, rng):
    x = rng.uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "batch.npy", x)
    np.save(tmp_path / "one.npy", x[0])
    code, stdout, err = cli("infer", bundle, "-i", tmp_path / "batch.npy", tmp_path / "one.npy",
                            "-o", tmp_path / "out.npy")
    assert code == 0, err
    with sessions.open(bundle) as session:
        expected = session.run(np.concatenate([x, x[:1]]))["logits"]
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    assert "batch.npy[2]:" in stdout and "one.npy:" in stdout
    code, stdout, err = cli("infer", bundle, "-i", tmp_path / "one.npy", "-o", tmp_path / "out.npz")
    assert code == 0, err
    with np.load(tmp_path / "out.npz") as archive:  # the suffix's format, with one output too
        np.testing.assert_array_equal(archive["logits"], expected[-1:])


@pytest.mark.parametrize(("args", "message"), [
    (["-i", "{tmp}/missing.png"], "input {tmp}/missing.png does not exist"),
    (["-i", "{tmp}/notes.txt"], "expected .png, .jpg, .jpeg or .npy"),
    (["-i", "{tmp}/wrong.npy"], "has shape [1, 1, 4, 4]; the model takes [-1, 1, 8, 8]"),
    (["-i", "{tmp}/notes.txt", "-o", "{tmp}/out.csv"], "use a .npy (one output) or .npz file"),
    (["-i", "{tmp}/wrong.npy", "--backend", "tensorrt"], "is ONNX; build a TensorRT plan from it"),
])
def test_infer_user_errors_exit_2_without_output(bundle, cli, tmp_path, args, message):
    (tmp_path / "notes.txt").write_text("hello")
    np.save(tmp_path / "wrong.npy", np.zeros((1, 4, 4), np.float32))
    before = files_under(tmp_path)
    code, out, err = cli("infer", bundle / "model.onnx", *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and "Traceback" not in err
    assert "missing" not in args[1] or out == "", "a missing input is named before the model is opened and checked"
    assert message.format(tmp=tmp_path) in " ".join(err.split())
    assert files_under(tmp_path) == before


def test_bench_times_artifacts_side_by_side_on_the_same_input(bundle, cli, tmp_path):
    result = tmp_path / "bench.json"
    code, stdout, err = cli("bench", "digits_resnet", bundle / "model.onnx", bundle / "model.onnx",
                            "--labels", "torch,ort,ort-again", "--batch", "1,4", "--seconds", "0.2",
                            "--json", result, "--markdown", tmp_path / "bench.md")
    assert code == 0, err
    record = json.loads(result.read_text())
    assert [a["backend"] for a in record["artifacts"]] == ["torch", "onnxruntime", "onnxruntime"]
    rows = {(r["artifact"], r["batch"]): r for r in record["results"]}
    assert set(rows) == {(label, batch) for label in ("torch", "ort", "ort-again") for batch in (1, 4)}
    for (label, _), row in rows.items():
        assert row["runs"] >= 5 and 0 < row["median_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["throughput"] == pytest.approx(row["batch"] * 1000 / row["median_ms"])
        assert row["max_rel_diff_vs_first"] <= 1e-4 and row["top1_agreement_vs_first"] == 1.0  # same model
        if label == "torch":
            assert row["vs_first"] == 1.0 and row["max_rel_diff_vs_first"] == 0.0
    assert "| ort-again | onnxruntime | 4 |" in (tmp_path / "bench.md").read_text()
    assert "× first" in stdout


def test_bench_runs_each_artifact_on_the_backend_named_for_it(bundle, cli, tmp_path):
    """`--backend` with one name per artifact: the same file on ONNX Runtime and OpenVINO side by side, beside torch
    (what `make bench`'s runtime part needs once `auto` sends a kind to OpenVINO on some CPU class)."""
    pytest.importorskip("openvino")
    result = tmp_path / "bench.json"
    code, _, err = cli("bench", "digits_resnet", bundle / "model.onnx", bundle / "model.onnx", "--labels",
                       "torch,ort,ov", "--backend", "torch,onnxruntime,openvino", "--batch", "2", "--seconds",
                       "0.2", "--json", result)
    assert code == 0, err
    record = json.loads(result.read_text())
    assert [a["backend"] for a in record["artifacts"]] == ["torch", "onnxruntime", "openvino"]
    assert all(r["max_rel_diff_vs_first"] <= 1e-4 for r in record["results"])  # FP32 everywhere (f32 hint)


@pytest.mark.parametrize(("backend", "message"), [
    ("torch,onnxruntime", "--backend: give one backend, or 3, one per artifact"),
    ("torch,onnx,openvino", "unknown backend 'onnx'"),
])
def test_bench_refuses_a_backend_list_that_does_not_fit(bundle, cli, backend, message):
    code, _, err = cli("bench", "digits_resnet", bundle / "model.onnx", bundle / "model.onnx", "--labels",
                       "a,b,c", "--backend", backend, "--seconds", "0.1")
    assert code == 2 and message in err and "Traceback" not in err


def test_bench_refuses_artifacts_with_different_inputs(exported, cli):
    code, _, err = cli("bench", exported("digits_resnet").bundle, "inception_block", "--seconds", "0.1")
    assert code == 2 and "the artifacts take different inputs" in err
