"""merge_conv_chain: Conv → linear 1x1 Conv becomes one Conv when exact and not more expensive."""

from __future__ import annotations

from onnx import helper

from onebyone.optimize.passes.merge_conv_chain import MergeConvChain
from tests.graphs import REL_TOL, apply_and_compare, model, ops, tensor_input


def chain(rng, first_out, second_out, kernel=3, channels_in=4, stride=1, pads=1, groups=1, biases=(True, True),
          second_stride=1, extra_reader=False):
    init = {"W1": rng.normal(0, 0.5, (first_out, channels_in // groups, kernel, kernel)),
            "W2": rng.normal(0, 0.5, (second_out, first_out, 1, 1))}
    inputs1, inputs2 = ["x", "W1"], ["c", "W2"]
    if biases[0]:
        init["B1"] = rng.normal(0, 0.5, first_out)
        inputs1.append("B1")
    if biases[1]:
        init["B2"] = rng.normal(0, 0.5, second_out)
        inputs2.append("B2")
    nodes = [helper.make_node("Conv", inputs1, ["c"], name="first", strides=[stride] * 2, pads=[pads] * 4,
                              group=groups),
             helper.make_node("Conv", inputs2, ["y"], name="second", strides=[second_stride] * 2)]
    outputs = ["y"]
    if extra_reader:
        nodes.append(helper.make_node("Relu", ["c"], ["r"]))
        outputs.append("r")
    return model(nodes, [tensor_input("x", ["N", channels_in, 9, 9])], outputs, init)


def test_padded_strided_conv_then_1x1_merges(rng):
    m = chain(rng, first_out=6, second_out=5, stride=2)  # merged 5·36 = 180 ≤ 6·36 + 5·6 = 246 MACs per pixel
    changed, error = apply_and_compare(m, MergeConvChain(), rng)
    assert changed and ops(m) == ["Conv"] and error <= REL_TOL and m.graph.outputs[0].name == "y"
    assert set(m.graph.initializers) == {n.inputs[i].name for n in m.graph for i in (1, 2)}


def test_1x1_pair_without_biases_merges(rng):
    m = chain(rng, first_out=8, second_out=16, kernel=1, channels_in=16, pads=0, biases=(False, False))
    changed, error = apply_and_compare(m, MergeConvChain(), rng)  # 256 ≤ 128 + 128
    assert changed and ops(m) == ["Conv"] and error <= REL_TOL


def test_bottleneck_is_refused_as_more_compute(rng):
    m = chain(rng, first_out=2, second_out=8)  # 8·36 = 288 > 2·36 + 16 = 88
    merge = MergeConvChain()
    assert not merge(m).modified and ops(m) == ["Conv", "Conv"]
    assert "adds compute (288 vs 88 MACs" in merge.refusals[0].reason


def test_intermediate_with_another_reader_and_grouped_first_conv_are_refused(rng):
    for m, reason in [(chain(rng, 6, 5, extra_reader=True), "other readers"),
                      (chain(rng, 6, 5, groups=2), "grouped")]:
        merge = MergeConvChain()
        assert not merge(m).modified and reason in merge.refusals[0].reason


def test_strided_second_conv_is_not_pointwise_and_left_alone(rng):
    m = chain(rng, 6, 5, second_stride=2)
    merge = MergeConvChain()
    assert not merge(m).modified and not merge.refusals
