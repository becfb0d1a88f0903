"""fold_affine: per-channel Mul/Add/Sub/Div fold into the Conv before (always) or after (when exact)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from onebyone.optimize.passes.fold_affine import FoldAffine
from tests.graphs import REL_TOL, apply_and_compare, model, ops, tensor_input

CHANNEL = (1, 6, 1, 1)


def conv(x, y, name="conv", pads=0, groups=1, bias=True):
    inputs = [x, f"{name}.W"] + ([f"{name}.B"] if bias else [])
    return helper.make_node("Conv", inputs, [y], name=name, pads=[pads] * 4, group=groups)


def conv_params(rng, name="conv", channels_out=6, channels_in=4, groups=1, kernel=3, bias=True):
    params = {f"{name}.W": rng.normal(0, 0.5, (channels_out, channels_in // groups, kernel, kernel))}
    if bias:
        params[f"{name}.B"] = rng.normal(0, 0.5, channels_out)
    return params


def test_mul_add_sub_div_after_conv_fold_into_it(rng):
    init = conv_params(rng, bias=False) | {"s": rng.uniform(0.5, 2, CHANNEL), "t": rng.normal(0, 1, CHANNEL),
                                           "u": rng.normal(0, 1, (6, 1, 1)), "v": rng.uniform(0.5, 2, CHANNEL),
                                           "k": np.array(1.7)}
    nodes = [conv("x", "c", pads=1, bias=False), helper.make_node("Mul", ["c", "s"], ["m"]),
             helper.make_node("Add", ["t", "m"], ["a"]), helper.make_node("Sub", ["a", "u"], ["d"]),
             helper.make_node("Sub", ["k", "d"], ["e"]), helper.make_node("Div", ["e", "v"], ["y"])]
    m = model(nodes, [tensor_input("x", ["N", 4, 7, 7])], ["y"], init)
    changed, error = apply_and_compare(m, FoldAffine(), rng)
    assert changed and ops(m) == ["Conv"] and error <= REL_TOL
    assert m.graph.outputs[0].name == "y" and not set(m.graph.initializers) & {"s", "t", "u", "v", "k"}


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_mul_and_add_before_unpadded_conv_fold_into_it(groups, rng):
    channels_in = 4
    init = conv_params(rng, channels_out=8, channels_in=channels_in, groups=groups) | {
        "s": rng.uniform(0.5, 2, (1, channels_in, 1, 1)), "t": rng.normal(0, 1, (channels_in, 1, 1))}
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "t"], ["a"]),
             conv("a", "y", groups=groups)]
    m = model(nodes, [tensor_input("x", ["N", channels_in, 7, 7])], ["y"], init)
    changed, error = apply_and_compare(m, FoldAffine(), rng)
    assert changed and ops(m) == ["Conv"] and error <= REL_TOL


def test_mul_before_padded_conv_folds_but_add_is_refused(rng):
    init = conv_params(rng) | {"s": rng.uniform(0.5, 2, (1, 4, 1, 1)), "t": rng.normal(0, 1, (1, 4, 1, 1))}
    nodes = [helper.make_node("Add", ["x", "t"], ["a"]), helper.make_node("Mul", ["a", "s"], ["m"]),
             conv("m", "y", pads=1)]
    m = model(nodes, [tensor_input("x", [2, 4, 7, 7])], ["y"], init)
    fold = FoldAffine()
    changed, error = apply_and_compare(m, fold, rng)
    assert changed and ops(m) == ["Add", "Conv"] and error <= REL_TOL
    assert any("zero-padded" in r.reason for r in fold.refusals)


@pytest.mark.parametrize(("shape", "reason"), [((1, 1, 7, 7), "not per-channel"), ((2, 1, 6, 1, 1), "rank 5")])
def test_constants_that_are_not_per_channel_are_refused(shape, reason, rng):
    init = conv_params(rng) | {"s": rng.normal(0, 1, shape)}
    nodes = [conv("x", "c", pads=1), helper.make_node("Mul", ["c", "s"], ["y"])]
    m = model(nodes, [tensor_input("x", [1, 4, 7, 7])], ["y"], init)
    fold = FoldAffine()
    changed, _ = apply_and_compare(m, fold, rng)
    assert not changed and ops(m) == ["Conv", "Mul"] and reason in fold.refusals[0].reason


def test_division_by_zero_is_refused(rng):
    init = conv_params(rng) | {"z": np.array([1, 2, 0, 1, 1, 1]).reshape(CHANNEL)}
    m = model([conv("x", "c", pads=1), helper.make_node("Div", ["c", "z"], ["y"])],
              [tensor_input("x", [1, 4, 7, 7])], ["y"], init)
    fold = FoldAffine()
    assert not fold(m).modified and ops(m) == ["Conv", "Div"]
    assert "division by a constant containing 0" in fold.refusals[0].reason


def test_multi_consumer_conv_is_refused(rng):
    init = conv_params(rng) | {"s": rng.normal(0, 1, CHANNEL), "t": rng.normal(0, 1, CHANNEL)}
    nodes = [conv("x", "c", pads=1), helper.make_node("Mul", ["c", "s"], ["y1"]),
             helper.make_node("Add", ["c", "t"], ["y2"])]
    m = model(nodes, [tensor_input("x", [1, 4, 7, 7])], ["y1", "y2"], init)
    fold = FoldAffine()
    changed, _ = apply_and_compare(m, fold, rng)
    assert not changed and len(fold.refusals) == 2 and all("other readers" in r.reason for r in fold.refusals)


def test_shared_weight_keeps_the_other_conv_unchanged(rng):
    init = conv_params(rng) | {"s": rng.uniform(0.5, 2, CHANNEL)}
    nodes = [conv("x", "c"), helper.make_node("Mul", ["c", "s"], ["y1"]),
             helper.make_node("Conv", ["x", "conv.W", "conv.B"], ["y2"], name="other")]
    m = model(nodes, [tensor_input("x", [1, 4, 7, 7])], ["y1", "y2"], init)
    changed, error = apply_and_compare(m, FoldAffine(), rng)  # y2 is compared too
    assert changed and ops(m) == ["Conv", "Conv"] and error <= REL_TOL
    assert [n.inputs[1].name for n in m.graph if n.name == "other"] == ["conv.W"]


def test_a_refusal_is_reported_once_while_other_folds_iterate(rng):
    init = conv_params(rng) | {"s": rng.uniform(0.5, 2, CHANNEL), "t": rng.normal(0, 1, CHANNEL),
                               "p": rng.normal(0, 1, (1, 6, 7, 7))}
    nodes = [conv("x", "c", pads=1), helper.make_node("Mul", ["c", "s"], ["m"]),
             helper.make_node("Add", ["m", "t"], ["a"]),
             helper.make_node("Mul", ["a", "p"], ["y"])]
    m = model(nodes, [tensor_input("x", [1, 4, 7, 7])], ["y"], init)
    fold = FoldAffine()
    changed, error = apply_and_compare(m, fold, rng)
    assert changed and ops(m) == ["Conv", "Mul"] and error <= REL_TOL
    assert len(fold.refusals) == 1 and "not per-channel" in fold.refusals[0].reason
