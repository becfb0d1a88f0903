"""merge_siblings: Convs sharing an input and geometry become one Conv and a Split, at every opset's Split form."""

from __future__ import annotations

import pytest
from onnx import helper

from onebyone.optimize.passes.merge_siblings import MergeSiblings
from tests.graphs import REL_TOL, apply_and_compare, model, ops, tensor_input


def branch(rng, name, channels_out, kernel=1, bias=True, stride=1, groups=1, pads=0, channels_in=8):
    init = {f"{name}.W": rng.normal(0, 0.5, (channels_out, channels_in // groups, kernel, kernel))}
    inputs = ["x", f"{name}.W"]
    if bias:
        init[f"{name}.B"] = rng.normal(0, 0.5, channels_out)
        inputs.append(f"{name}.B")
    node = helper.make_node("Conv", inputs, [name], name=name, strides=[stride] * 2, group=groups, pads=[pads] * 4)
    return node, init


def siblings_model(rng, branches, opset=18, relu_after=("a",)):
    nodes, init = [], {}
    for name, kwargs in branches.items():
        node, params = branch(rng, name, **kwargs)
        nodes.append(node)
        init |= params
    outputs = []
    for name in branches:
        if name in relu_after:
            nodes.append(helper.make_node("Relu", [name], [f"{name}_relu"]))
            outputs.append(f"{name}_relu")
        else:
            outputs.append(name)
    return model(nodes, [tensor_input("x", ["N", 8, 6, 6])], outputs, init, opset=opset)


@pytest.mark.parametrize("opset", [11, 13, 18])
def test_inception_style_1x1_siblings_merge_with_split(opset, rng):
    m = siblings_model(rng, {"a": {"channels_out": 4}, "b": {"channels_out": 6, "bias": False},
                             "c": {"channels_out": 3}, "d": {"channels_out": 5, "kernel": 3, "pads": 1}}, opset)
    merge = MergeSiblings()
    changed, error = apply_and_compare(m, merge, rng)
    assert changed and error <= REL_TOL and sorted(ops(m)) == ["Conv", "Conv", "Relu", "Split"]
    split = next(n for n in m.graph if n.op_type == "Split")
    assert [o.name for o in split.outputs] == ["a", "b", "c"]
    assert (len(split.inputs) == 2) == (opset >= 13)
    assert [r.node for r in merge.refusals] == ["d"] and "no sibling" in merge.refusals[0].reason


def test_stage_entry_siblings_with_equal_stride_merge_and_unequal_do_not(rng):
    same = siblings_model(rng, {"conv1": {"channels_out": 4, "stride": 2}, "down": {"channels_out": 16, "stride": 2}})
    assert apply_and_compare(same, MergeSiblings(), rng)[0] and ops(same).count("Conv") == 1
    mixed = siblings_model(rng, {"conv1": {"channels_out": 4}, "down": {"channels_out": 16, "stride": 2}})
    merge = MergeSiblings()
    assert not merge(mixed).modified and len(merge.refusals) == 2


def test_grouped_siblings_are_refused(rng):
    m = siblings_model(rng, {"a": {"channels_out": 4, "groups": 2}, "b": {"channels_out": 4, "groups": 2}})
    merge = MergeSiblings()
    assert not merge(m).modified and all("grouped" in r.reason for r in merge.refusals)
