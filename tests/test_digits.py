"""digits_resnet learns sklearn's digits: held-out accuracy from sklearn's own labels, in torch and in ONNX."""

from __future__ import annotations

import json

import numpy as np

from onebyone.export.models.digits import Recipe, accuracy
from onebyone.export.models.trained import cached_files
from onebyone.export.zoo import ZOO, instantiate
from onebyone.runtime.bundle.digits import CALIB_SIZE, digits_splits
from onebyone.runtime.bundle.golden import reference_session, run_session
from onebyone.runtime.bundle.manifest import read_manifest

MIN_TEST_ACCURACY = 0.97


def test_splits_are_disjoint_stratified_and_cover_the_dataset():
    from sklearn.datasets import load_digits

    dataset = load_digits()
    splits = digits_splits()
    rows = np.concatenate([split.indices for split in splits.values()])
    assert sorted(rows) == list(range(len(dataset.target))), "splits are disjoint and cover every image"
    assert len(splits["calib"].labels) == CALIB_SIZE and len(splits["test"].labels) == 360  # ceil(0.2 x 1797)
    for split in splits.values():
        np.testing.assert_array_equal(split.labels, dataset.target[split.indices])
        np.testing.assert_allclose(split.images[:, 0] * 0.5 + 0.5, dataset.images[split.indices] / 16)
        assert set(split.labels) == set(range(10)), "every class appears in every split"


def test_held_out_accuracy_in_torch_and_onnx(exported):
    model = instantiate(ZOO["digits_resnet"])
    test = digits_splits()["test"]
    torch_accuracy = accuracy(model, test)
    assert torch_accuracy >= MIN_TEST_ACCURACY, f"torch test accuracy {torch_accuracy:.4f}"
    logits = run_session(reference_session(exported("digits_resnet").onnx_path), {"input": test.images})["logits"]
    onnx_accuracy = float(np.mean(logits.argmax(1) == test.labels))
    assert onnx_accuracy >= MIN_TEST_ACCURACY, f"ONNX test accuracy {onnx_accuracy:.4f}"
    result = exported("digits_resnet")
    assert result.torch_accuracy == torch_accuracy and result.check.accuracy == onnx_accuracy
    assert read_manifest(result.bundle).artifacts["model.onnx"].parity["accuracy"] == onnx_accuracy
    report = json.loads(cached_files("digits_resnet", Recipe())[1].read_text())
    assert report is not None and report["test_accuracy"] == torch_accuracy
    assert report["test_samples"] == len(test.labels)
