"""fuse_conv_activation (ORT target): Conv+Relu, Conv+Clip and Conv+Add+Relu run as one FusedConv, exactly."""

from __future__ import annotations

import numpy as np
from onnx import helper

from onebyone.optimize.passes.fuse_conv_activation import MS_DOMAIN, FuseConvActivation
from tests.graphs import REL_TOL, apply_and_compare, model, ops, tensor_input


def conv(name, x, y, bias=True):
    return helper.make_node("Conv", [x, f"{name}.W", *([f"{name}.B"] if bias else [])], [y], name=name,
                            pads=[1, 1, 1, 1])


def params(rng, name, bias=True):
    return {f"{name}.W": rng.normal(0, 0.5, (4, 4, 3, 3))} | ({f"{name}.B": rng.normal(0, 0.5, 4)} if bias else {})


def test_relu_clip_and_residual_relu_fuse(rng):
    init = params(rng, "a") | params(rng, "b", bias=False) | params(rng, "c") | {
        "lo": np.array(0.0), "hi": np.array(0.5)}
    nodes = [conv("a", "x", "ya"), helper.make_node("Relu", ["ya"], ["ra"]),
             conv("b", "ra", "yb", bias=False), helper.make_node("Clip", ["yb", "lo", "hi"], ["rb"]),
             conv("c", "rb", "yc"), helper.make_node("Add", ["ra", "yc"], ["s"]),
             helper.make_node("Relu", ["s"], ["y"])]
    m = model(nodes, [tensor_input("x", ["N", 4, 6, 6])], ["y"], init)
    changed, error = apply_and_compare(m, FuseConvActivation(), rng)
    assert changed and error <= REL_TOL and ops(m) == ["FusedConv"] * 3
    a, b, c = m.graph
    assert a.attributes["activation"].value == "Relu" and a.outputs[0].name == "ra"
    assert b.attributes["activation"].value == "Clip" and list(b.attributes["activation_params"].value) == [0.0, 0.5]
    assert len(c.inputs) == 4 and c.inputs[3].name == "ra" and c.outputs[0].name == "y"
    assert m.opset_imports[MS_DOMAIN] == 1


def test_shared_conv_output_and_broadcast_residual_are_left_alone(rng):
    init = params(rng, "a") | params(rng, "b") | {"t": rng.normal(0, 1, (1, 4, 1, 1))}
    nodes = [conv("a", "x", "ya"), helper.make_node("Relu", ["ya"], ["ra"]),
             conv("b", "x", "yb"), helper.make_node("Add", ["yb", "t"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    m = model(nodes, [tensor_input("x", [1, 4, 6, 6])], ["ya", "ra", "y"], init)
    fuse = FuseConvActivation()
    changed, _ = apply_and_compare(m, fuse, rng)
    assert not changed and "FusedConv" not in ops(m)
    assert [r.node for r in fuse.refusals] == ["Add"] and "shape" in fuse.refusals[0].reason
