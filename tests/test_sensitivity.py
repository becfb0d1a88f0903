"""Sensitivity and fallback on a model made quantization-hostile in one layer: one channel of conv1's output is
scaled up 500× (and conv2's weights on it down 500×, so the float model computes the same). Per-tensor INT8 on
conv2's input then rounds the other seven channels to almost nothing; the ranking must put conv2 first, and
`--accuracy-budget` must keep it in float and bring the drop within the budget."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper

from onebyone.optimize.precision.calibrate import collect
from onebyone.optimize.precision.qdq import TensorRange
from onebyone.optimize.precision.sensitivity import METRIC, drop_points, fall_back, quantized, rank_layers, run
from onebyone.runtime.bundle.sources import DataSource
from tests.graphs import model as onnx_model
from tests.graphs import tensor_input

OUTLIER = 500.0
BUDGET = 2.0  # points of top-1 agreement with the float model
MODEL_SEED = 0  # fixed weights whose float decisions vary with the input (some random draws give a model whose
# top class hardly depends on it, where top-1 changes cannot measure anything); the inputs are fresh every run


def hostile_model(rng: np.random.Generator) -> ir.Model:
    w1, b1 = rng.normal(0, 0.5, (8, 3, 3, 3)), rng.normal(0, 0.1, 8)
    w2, b2 = rng.normal(0, 0.5, (16, 8, 1, 1)), rng.normal(0, 0.1, 16)
    w1[0] *= OUTLIER  # a large, input-dependent channel; no bias, so it carries signal rather than an offset
    b1[0] = 0.0
    w2[:, 0] /= OUTLIER
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["a"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["a_relu"], name="relu1"),
             helper.make_node("Conv", ["a_relu", "w2", "b2"], ["c"], name="conv2"),
             helper.make_node("Relu", ["c"], ["c_relu"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["c_relu"], ["pooled"], name="pool"),
             helper.make_node("Flatten", ["pooled"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "w3", "b3"], ["logits"], name="fc", transB=1)]
    weights = {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": rng.normal(0, 1, (10, 16)), "b3": np.zeros(10)}
    return onnx_model(nodes, [tensor_input("x", ["N", 3, 8, 8])], ["logits"], weights)


@pytest.fixture
def hostile(rng):
    model = hostile_model(np.random.default_rng(MODEL_SEED))
    inputs = rng.standard_normal((256, 3, 8, 8)).astype(np.float32)
    data = DataSource("N(0,1)", len(inputs), lambda start, stop: inputs[start:stop])
    calibration = collect(model, "0" * 64, data, 64)
    amax = calibration.ranges("minmax", 100.0)
    ranges = {name: TensorRange(amax[name], s.minimum, s.maximum) for name, s in calibration.statistics.items()}
    return model, ranges, inputs


@pytest.mark.parametrize("flavour", ["trt", "ort"])
def test_the_hostile_layer_ranks_first_and_the_budget_keeps_it_float(hostile, flavour, rng):
    model, ranges, inputs = hostile
    ranking = rank_layers(model, ranges, flavour, inputs)
    assert ranking[0][0] == "conv2", ranking
    assert ranking[0][1] > 5 * ranking[1][1]  # by a wide margin
    result = fall_back(model, ranges, flavour, set(), inputs, lambda _, drop: drop <= BUDGET)
    assert result.drop_before > BUDGET and result.excluded == ["conv2"] and result.drop_after <= BUDGET
    fresh = rng.standard_normal((256, 3, 8, 8)).astype(np.float32)  # held-out: the choice generalises
    reference = run(model, fresh)
    error = {name: float(np.linalg.norm(run(quantized(model, ranges, flavour, excluded), fresh)["logits"]
                                        - reference["logits"]) / np.linalg.norm(reference["logits"]))
             for name, excluded in (("all int8", set()), ("conv2 float", {"conv2"}))}
    drops = {name: drop_points(reference, run(quantized(model, ranges, flavour, excluded), fresh))
             for name, excluded in (("all int8", set()), ("conv2 float", {"conv2"}))}
    print(f"{flavour}: calibration drop {result.drop_before:.1f} → {result.drop_after:.1f} pt; held-out rel-L2 "
          f"{error}, top-1 changes {drops}")
    assert error["conv2 float"] < error["all int8"] / 5 and drops["conv2 float"] <= BUDGET < drops["all int8"]


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_the_search_keeps_the_first_k_of_the_ranking(hostile, count):
    """Doubling then bisection lands on the least k that meets the stop rule, taken in ranking order."""
    model, ranges, inputs = hostile
    result = fall_back(model, ranges, "trt", set(), inputs, lambda k, _: k >= count, always_rank=True)
    assert result.excluded == [layer for layer, _ in result.ranking][:count]


def test_quantize_accuracy_budget_writes_conv2_float(hostile, cli, tmp_path):
    model, _, inputs = hostile
    ir.save(model, tmp_path / "hostile.onnx")
    reference = run(model, inputs)
    np.savez(tmp_path / "calib.npz", inputs=inputs, labels=reference["logits"].argmax(1))
    code, out, err = cli("quantize", tmp_path / "hostile.onnx", "--precision", "int8", "--calib",
                         tmp_path / "calib.npz", "--method", "minmax", "--accuracy-budget", str(BUDGET))
    assert code == 0, out + err
    assert "sensitivity 1. conv2" in out and "kept float: conv2" in out
    written = ir.load(tmp_path / "hostile.int8-trt.onnx")
    conv2 = next(node for node in written.graph if node.name == "conv2")
    conv1 = next(node for node in written.graph if node.name == "conv1")
    assert conv2.inputs[0].producer().op_type != "DequantizeLinear"  # conv2 reads the float activation
    assert conv1.inputs[0].producer().op_type == "DequantizeLinear"  # the rest is quantized
    drop = drop_points(reference, run(written, inputs))
    assert drop <= BUDGET


@pytest.mark.parametrize(("args", "message"), [
    (["--precision", "fp16", "--sensitivity"], "apply to --precision int8 with calibration data"),
    (["--precision", "int8", "--calib", "digits", "--accuracy-budget", "-1"], "--accuracy-budget -1.0 is negative"),
])
def test_fallback_user_errors(exported, cli, args, message):
    code, _, err = cli("quantize", exported("digits_resnet").onnx_path, *args)
    assert code == 2 and message in " ".join(err.split())


def test_the_fallback_is_recorded_in_the_bundle_manifest(bundle_copy, cli):
    from onebyone.runtime.bundle.manifest import read_manifest

    bundle = bundle_copy("digits_resnet")
    code, out, err = cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits",
                         "--method", "minmax", "--auto-exclude", "1")
    assert code == 0, out + err
    fallback = read_manifest(bundle).artifacts["model.int8-trt.onnx"].made_by["fallback"]
    first = fallback["ranking"][0][0]
    assert fallback["auto_exclude"] == 1 and fallback["excluded"] == [first]
    assert fallback["metric"] == METRIC and fallback["samples"] == 180
    assert [name for name, _ in fallback["ranking"]] == sorted((name for name, _ in fallback["ranking"]),
                                                               key=dict(fallback["ranking"]).get, reverse=True)
    assert read_manifest(bundle).artifacts["model.int8-trt.onnx"].made_by["float_nodes"][first].startswith(
        "kept float by the sensitivity fallback")


def test_the_drop_is_that_of_the_output_whose_decisions_change_most():
    """Every output is held to the budget: a second output's changes count; per-pixel scores count per pixel."""
    classes = np.eye(3)
    reference = {"first": classes[[0, 1, 2, 0]], "second": classes[[0, 0, 0, 0]]}
    assert drop_points(reference, {"first": reference["first"], "second": classes[[1, 0, 0, 0]]}) == 25.0
    masks = np.zeros((2, 4, 4), dtype=int)
    scores = np.eye(2)[masks].transpose(0, 3, 1, 2)  # N × classes × H × W
    moved = scores.copy()
    moved[0, :, 0, 0] = moved[0, ::-1, 0, 0]  # one pixel of 32 changes class
    assert drop_points({"out": scores}, {"out": moved}) == pytest.approx(100 / 32)
