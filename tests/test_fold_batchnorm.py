"""fold_batchnorm: every foldable case is exact (ORT before vs after), every unsafe case is refused with a reason."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper

from onebyone.optimize.passes.fold_batchnorm import FoldBatchNorm
from tests.graphs import REL_TOL, apply_and_compare, bn_node, bn_params, model, ops, tensor_input


def conv_bn(rng, groups=1, bias=True, channels_in=4, channels_out=6, kernel=3, pads=1):
    init = {"W": rng.normal(0, 0.5, (channels_out, channels_in // groups, kernel, kernel))}
    inputs = ["x", "W"]
    if bias:
        init["B"] = rng.normal(0, 0.5, channels_out)
        inputs.append("B")
    init |= bn_params("bn", channels_out, rng)
    nodes = [helper.make_node("Conv", inputs, ["c"], name="conv", group=groups, pads=[pads] * 4),
             bn_node("c", "y", "bn")]
    return model(nodes, [tensor_input("x", ["N", channels_in, 7, 7])], ["y"], init)


@pytest.mark.parametrize(("groups", "bias", "channels_in", "channels_out"), [
    (1, True, 4, 6), (1, False, 4, 6), (2, True, 4, 6), (4, False, 4, 4),  # plain, no bias, grouped, depthwise
])
def test_conv_bn_folds_exactly(groups, bias, channels_in, channels_out, rng):
    m = conv_bn(rng, groups, bias, channels_in, channels_out)
    changed, error = apply_and_compare(m, FoldBatchNorm(), rng)
    assert changed and ops(m) == ["Conv"] and error <= REL_TOL
    assert m.graph.outputs[0].name == "y" and m.graph.outputs[0].producer().op_type == "Conv"


def test_zero_variance_uses_epsilon(rng):
    m = conv_bn(rng)
    m.graph.initializers["bn.var"].const_value = ir.tensor(np.zeros(6, np.float32))
    changed, error = apply_and_compare(m, FoldBatchNorm(), rng)
    assert changed and ops(m) == ["Conv"] and error <= REL_TOL


def test_conv_transpose_with_groups(rng):
    init = {"W": rng.normal(0, 0.5, (6, 3, 3, 3)), "B": rng.normal(0, 0.5, 6)} | bn_params("bn", 6, rng)
    nodes = [helper.make_node("ConvTranspose", ["x", "W", "B"], ["c"], group=2, strides=[2, 2]),
             bn_node("c", "y", "bn")]
    m = model(nodes, [tensor_input("x", [2, 6, 5, 5])], ["y"], init)  # C_in/groups = 3 ≠ groups: layouts differ
    changed, error = apply_and_compare(m, FoldBatchNorm(), rng)
    assert changed and ops(m) == ["ConvTranspose"] and error <= REL_TOL


@pytest.mark.parametrize(("trans_b", "alpha", "beta", "with_c"), [(1, 0.7, 0.5, True), (0, 1.0, 1.0, False),
                                                                    (1, 1.0, 2.0, True)])
def test_gemm_bn_folds_exactly(trans_b, alpha, beta, with_c, rng):
    weight_shape = (5, 8) if trans_b else (8, 5)
    init = {"B": rng.normal(0, 0.5, weight_shape)} | bn_params("bn", 5, rng)
    inputs = ["a", "B"]
    if with_c:
        init["C"] = rng.normal(0, 0.5, 5)
        inputs.append("C")
    nodes = [helper.make_node("Gemm", inputs, ["g"], transB=trans_b, alpha=alpha, beta=beta),
             bn_node("g", "y", "bn")]
    m = model(nodes, [tensor_input("a", [3, 8])], ["y"], init)
    changed, error = apply_and_compare(m, FoldBatchNorm(), rng)
    assert changed and ops(m) == ["Gemm"] and error <= REL_TOL


def test_shared_weight_gets_its_own_copy(rng):
    init = {"W": rng.normal(0, 0.5, (4, 4, 1, 1))} | bn_params("bn", 4, rng)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c1"], name="conv1"), bn_node("c1", "y1", "bn"),
             helper.make_node("Conv", ["x", "W"], ["y2"], name="conv2")]
    m = model(nodes, [tensor_input("x", [1, 4, 5, 5])], ["y1", "y2"], init)
    original = m.graph.initializers["W"].const_value.numpy().copy()
    changed, error = apply_and_compare(m, FoldBatchNorm(), rng)  # compares y2 too: the other user is unchanged
    assert changed and error <= REL_TOL and ops(m) == ["Conv", "Conv"]
    conv1, conv2 = list(m.graph)
    assert conv2.inputs[1].name == "W" and np.array_equal(conv2.inputs[1].const_value.numpy(), original)
    assert conv1.inputs[1].name != "W"


def test_multi_consumer_conv_is_refused_and_bn_becomes_scale_shift(rng):
    init = {"W": rng.normal(0, 0.5, (4, 4, 3, 3))} | bn_params("bn", 4, rng)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]), bn_node("c", "y", "bn"),
             helper.make_node("Relu", ["c"], ["r"])]
    m = model(nodes, [tensor_input("x", [1, 4, 5, 5])], ["y", "r"], init)
    fold = FoldBatchNorm()
    changed, error = apply_and_compare(m, fold, rng)
    assert changed and error <= REL_TOL and "BatchNormalization" not in ops(m)
    assert ops(m).count("Mul") == 1 and ops(m).count("Add") == 1
    assert len(fold.refusals) == 1 and "other readers" in fold.refusals[0].reason


def test_bn_on_a_graph_input_becomes_scale_shift(rng):
    m = model([bn_node("x", "y", "bn")], [tensor_input("x", [2, 3, 4, 4])], ["y"], bn_params("bn", 3, rng))
    changed, error = apply_and_compare(m, FoldBatchNorm(), rng)
    assert changed and ops(m) == ["Mul", "Add"] and error <= REL_TOL and m.graph.outputs[0].name == "y"


def test_training_mode_opset15_is_refused(rng):
    m = conv_bn(rng)
    bn = next(n for n in m.graph if n.op_type == "BatchNormalization")
    bn.attributes["training_mode"] = ir.AttrInt64("training_mode", 1)
    fold = FoldBatchNorm()
    assert not fold(m).modified and "BatchNormalization" in ops(m)
    assert "training-mode" in fold.refusals[0].reason


def test_training_mode_opset9_five_outputs_is_refused(rng):
    init = {"W": rng.normal(0, 0.5, (4, 4, 1, 1))} | bn_params("bn", 4, rng)
    bn = helper.make_node("BatchNormalization", ["c", "bn.gamma", "bn.beta", "bn.mean", "bn.var"],
                          ["y", "mean_out", "var_out", "saved_mean", "saved_var"], name="bn")
    m = model([helper.make_node("Conv", ["x", "W"], ["c"]), bn], [tensor_input("x", [2, 4, 3, 3])], ["y"], init,
              opset=9)
    fold = FoldBatchNorm()
    assert not fold(m).modified and "BatchNormalization" in ops(m)
    assert "training-mode" in fold.refusals[0].reason


def test_non_constant_parameters_are_refused(rng):
    init = {k: v for k, v in bn_params("bn", 3, rng).items() if k != "bn.gamma"}
    m = model([bn_node("x", "y", "bn")], [tensor_input("x", [2, 3, 4, 4]), tensor_input("bn.gamma", [3])], ["y"],
              init)
    fold = FoldBatchNorm()
    assert not fold(m).modified and "not a constant" in fold.refusals[0].reason
