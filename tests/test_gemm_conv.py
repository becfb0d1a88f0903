"""gemm_as_conv and conv_as_gemm: a classifier on pooled features is the same as a Gemm or a 1x1 Conv."""

from __future__ import annotations

import pytest
from onnx import helper

from onebyone.optimize.passes.conv_as_gemm import ConvAsGemm
from onebyone.optimize.passes.gemm_as_conv import GemmAsConv
from tests.graphs import REL_TOL, apply_and_compare, model, ops, tensor_input


def classifier(rng, op="Gemm", trans_b=1, alpha=1.0, beta=1.0, bias_shape=(5,)):
    weight_shape = (5, 8) if op == "Gemm" and trans_b else (8, 5)
    init = {"B": rng.normal(0, 0.5, weight_shape)}
    head_inputs = ["f", "B"]
    attributes = {"transB": trans_b, "alpha": alpha, "beta": beta} if op == "Gemm" else {}
    if op == "Gemm" and bias_shape is not None:
        init["C"] = rng.normal(0, 0.5, bias_shape)
        head_inputs.append("C")
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"], axis=1),
             helper.make_node(op, head_inputs, ["logits"], name="fc", **attributes)]
    return model(nodes, [tensor_input("x", ["N", 8, 7, 7])], ["logits"], init)


@pytest.mark.parametrize(("op", "trans_b", "alpha", "beta", "bias_shape"), [
    ("Gemm", 1, 1.0, 1.0, (5,)), ("Gemm", 0, 0.5, 2.0, (1, 5)), ("Gemm", 1, 1.0, 1.0, ()), ("Gemm", 1, 2.0, 1.0, None),
    ("MatMul", 0, 1.0, 1.0, None),
])
def test_classifier_becomes_1x1_conv_and_back(op, trans_b, alpha, beta, bias_shape, rng):
    m = classifier(rng, op, trans_b, alpha, beta, bias_shape)
    changed, error = apply_and_compare(m, GemmAsConv(), rng)
    assert changed and error <= REL_TOL and ops(m) == ["GlobalAveragePool", "Conv", "Flatten"]
    assert m.graph.outputs[0].name == "logits"
    changed, error = apply_and_compare(m, ConvAsGemm(), rng)
    assert changed and error <= REL_TOL and ops(m) == ["GlobalAveragePool", "Flatten", "Gemm"]
    assert len(m.graph.initializers) == 2


def test_flattened_feature_maps_are_not_one_pixel(rng):
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "B"], ["logits"], transB=1)]
    m = model(nodes, [tensor_input("x", ["N", 8, 2, 2])], ["logits"], {"B": rng.normal(0, 0.5, (5, 32))})
    assert not GemmAsConv()(m).modified and ops(m) == ["Flatten", "Gemm"]


def test_non_constant_weight_is_refused(rng):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "w"], ["logits"])]
    m = model(nodes, [tensor_input("x", [2, 8, 3, 3]), tensor_input("w", [8, 5])], ["logits"], {})
    gemm_as_conv = GemmAsConv()
    assert not gemm_as_conv(m).modified and "not a constant" in gemm_as_conv.refusals[0].reason
    assert ops(m) == ["GlobalAveragePool", "Flatten", "MatMul"]
