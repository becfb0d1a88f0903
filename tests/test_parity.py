"""`onebyone parity`: metrics computed as defined, localisation naming a deliberately corrupted layer, and user
errors (mismatched models, labels, data sources) exiting 2."""

from __future__ import annotations

import ast
import dataclasses
import json
import re

import numpy as np
import onnx_ir as ir
import pytest

from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.parity.metrics import compare, measure
from tests.helpers import REPO

CORRUPTED = "/layer2/layer2.0/conv2/Conv"


def test_metrics_follow_their_definitions(rng):
    reference = rng.normal(size=(50, 10))
    candidate = reference + rng.normal(scale=0.01, size=reference.shape)
    labels = rng.integers(0, 10, 50)
    metrics = measure({"y": reference}, {"y": candidate}, labels)
    diff = candidate - reference
    assert metrics.max_abs == pytest.approx(np.abs(diff).max())
    assert metrics.max_rel == pytest.approx(np.abs(diff).max() / np.abs(reference).max())
    assert metrics.rel_l2 == pytest.approx(np.linalg.norm(diff) / np.linalg.norm(reference))
    cosine = np.sum(reference * candidate) / np.linalg.norm(reference) / np.linalg.norm(candidate)
    assert metrics.cosine == pytest.approx(cosine)
    assert metrics.top1_agreement == pytest.approx(np.mean(reference.argmax(1) == candidate.argmax(1)))
    overlap = np.mean([len(set(np.argsort(-r)[:5]) & set(np.argsort(-c)[:5])) / 5
                       for r, c in zip(reference, candidate, strict=True)])
    assert metrics.top5_overlap == pytest.approx(overlap)
    assert metrics.accuracy_reference == pytest.approx(np.mean(reference.argmax(1) == labels))
    assert metrics.accuracy_candidate == pytest.approx(np.mean(candidate.argmax(1) == labels))
    same = measure({"y": reference}, {"y": reference.copy()}, None)
    assert same.max_abs == 0 and same.cosine == pytest.approx(1.0) and same.failures(TOLERANCES["fp32"]) == []
    broken = measure({"y": reference}, {"y": np.where(candidate > 2, np.nan, candidate)}, None)
    assert "non-finite outputs" in broken.failures(TOLERANCES["int8"])


def test_identical_all_zero_outputs_agree_and_one_zero_side_does_not():
    """Found by tests/test_optimize_properties.py: a ReLU network whose every output is 0 failed its own kernel check,
    cosine 0 < 0.998, because the cosine of two zero vectors was taken as 0."""
    zeros = {"y": np.zeros((2, 3, 4, 4), np.float32)}
    assert compare(zeros, zeros, TOLERANCES["int8-kernel"]).ok
    assert compare(zeros, {"y": np.ones((2, 3, 4, 4), np.float32)}, TOLERANCES["int8-kernel"]).metrics.cosine == 0.0


def test_a_corrupted_conv_is_named_as_the_first_divergence(exported, cli, tmp_path):
    source = exported("digits_resnet").onnx_path
    model = ir.load(source)
    conv = next(node for node in model.graph if node.name == CORRUPTED)
    weight = conv.inputs[1]
    weight.const_value = ir.tensor(weight.const_value.numpy() * 1.5, name=weight.name)
    ir.save(model, tmp_path / "corrupted.onnx")
    code, out, err = cli("parity", source, tmp_path / "corrupted.onnx", source, "--data", "digits",
                         "--json", tmp_path / "parity.json")
    assert code == 1, err  # the corrupted candidate fails; the untouched one passes
    report = json.loads((tmp_path / "parity.json").read_text())
    corrupted, untouched = report["candidates"]
    assert corrupted["failures"] and not untouched["failures"]
    first = corrupted["layers"]["first_divergence"]
    assert first["node"] == CORRUPTED and first["op"] == "Conv"
    layers = corrupted["layers"]["layers"]
    before = layers[:[layer["node"] for layer in layers].index(CORRUPTED)]
    assert before and max(layer["rel_l2"] for layer in before) < 1e-6  # exact up to there
    assert untouched["layers"]["first_divergence"] is None
    assert f"first layer above rel-L2 0.0001: {CORRUPTED} (Conv)" in out


def test_passing_candidates_exit_0_with_accuracy_on_labels(bundle_copy, cli, tmp_path):
    bundle = bundle_copy("digits_resnet")
    assert cli("quantize", bundle / "model.onnx", "--precision", "fp16")[0] == 0
    code, out, err = cli("parity", bundle, bundle / "model.onnx", bundle / "model.fp16.onnx", "--samples", "100")
    assert code == 0, out + err
    assert "data: sklearn digits, held-out test split (360 images)" in out  # the bundle's labelled data
    assert out.count("PASS") == 2 and "accuracy" in out


@pytest.mark.parametrize(("candidate", "data", "message"), [
    ("inception", None, "has inputs [('input', (192, 28, 28))], the reference has [('input', (1, 8, 8))]"),
    ("digits", "{tmp}/mismatch.npz", "has 5 inputs but 4 labels; they must pair up"),
    ("digits", "imagenet", "unknown data source 'imagenet'"),
    ("digits", "{tmp}/unnamed.npz", "holds arrays ['x', 'y']; name the inputs 'input' or 'inputs'"),
])
def test_user_errors_exit_2(exported, cli, tmp_path, candidate, data, message):
    np.savez(tmp_path / "mismatch.npz", inputs=np.zeros((5, 1, 8, 8), np.float32), labels=np.zeros(4, np.int64))
    np.savez(tmp_path / "unnamed.npz", x=np.zeros((5, 1, 8, 8), np.float32), y=np.zeros((5, 1, 8, 8), np.float32))
    target = exported("inception_block" if candidate == "inception" else "digits_resnet").onnx_path
    args = ["--data", data.format(tmp=tmp_path)] if data else []
    code, _, err = cli("parity", exported("digits_resnet").onnx_path, target, *args)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err


BOUND_NAME = re.compile(r"TOLERANCE|BOUND")


def test_every_tolerance_lives_in_one_table():
    """No module but runtime/bundle/tolerances.py builds a Tolerance from numbers or keeps a table of bounds."""
    offenders = []
    for path in sorted(p for folder in ("export", "optimize", "runtime") for p in (REPO / folder).rglob("*.py")):
        if path == REPO / "runtime" / "bundle" / "tolerances.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            built = (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "Tolerance"
                     and any(isinstance(a, ast.Constant) for a in [*node.args, *(k.value for k in node.keywords)]))
            table = (isinstance(node, ast.Assign) and any(BOUND_NAME.search(getattr(t, "id", "")) for t in node.targets)
                     and isinstance(node.value, ast.Dict))
            if built or table:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_the_accuracy_share_rule_fails_a_real_drop_and_not_chance():
    """int8's rule: top-1 ≥ 99% of the reference's, unless the shortfall is within what chance allows (2√d images,
    d = images whose top-1 changed). 60 of 1000 correct answers lost: 51 images short, 2√60 ≈ 15 allowed → fails;
    10 lost: 1 image short → passes; and the failure names both."""
    from onebyone.runtime.parity.metrics import compare

    labels = np.arange(1000) % 10
    reference = np.eye(10)[labels]
    reference[900:] = np.roll(reference[900:], 1, axis=1)  # the reference gets 900 of 1000 right
    for lost, ok in ((60, False), (10, True)):
        candidate = reference.copy()
        candidate[:lost] = np.roll(candidate[:lost], 1, axis=1)
        parity = compare({"logits": reference}, {"logits": candidate},
                         dataclasses.replace(TOLERANCES["int8"], max_rel=10, min_cosine=None, min_top1=None), labels)
        assert parity.ok is ok, parity.failures
        if not ok:
            assert "of the reference's 90.00% by 51 of 1000 images" in " ".join(parity.failures)
