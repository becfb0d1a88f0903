"""Merge a Conv followed directly by a linear 1x1 Conv into one Conv."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from optimize.graph import constant, set_constant_input, single_consumer, take_over
from optimize.passes.base import GraphPass


def is_pointwise(conv: ir.Node, weight: np.ndarray) -> bool:
    """A 1x1 Conv with stride 1, no padding and group 1: a matrix over channels applied at every pixel."""
    attrs = conv.attributes
    return (all(size == 1 for size in weight.shape[2:]) and attrs.get_int("group", 1) == 1
            and all(s == 1 for s in attrs.get_ints("strides", ())) and not any(attrs.get_ints("pads", ()))
            and attrs.get_string("auto_pad", "NOTSET") in ("NOTSET", "VALID"))


def constant_weights(conv: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, b) as float64 when both are constants (b = 0 when the Conv has none), else None."""
    weight = constant(conv.inputs[1])
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    bias = constant(conv.inputs[2]) if has_bias else None
    if weight is None or (has_bias and bias is None):
        return None
    return weight.astype(np.float64), np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)


class MergeConvChain(GraphPass):
    """y = W2∗(W1∗x + b1) + b2 with W2 a 1x1 Conv (stride 1, no padding, group 1) is one Conv:

        W[o, i, k…] = Σ_m W2[o, m]·W1[m, i, k…],   b = W2·b1 + b2

    with W1's stride, padding and dilation (W2 acts per pixel, so padded borders stay exact). Requires nothing
    between the two (an activation would make it non-linear) and the intermediate read only by W2.
    Refused: a grouped first Conv (the product would be dense), and a merge that adds compute — per output pixel
    the merged Conv costs C_out·C_in·k MACs against C_mid·C_in·k + C_out·C_mid for the pair (a bottleneck, where
    C_mid is small, is cheaper as two). The merged Conv's output takes W2's output name.
    """

    name = "merge_conv_chain"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        changed = self.rewrite_each(model, ("Conv",), lambda second: self._merge(model.graph, second))
        return ir.passes.PassResult(model, changed)

    def _merge(self, graph: ir.Graph, second: ir.Node) -> bool:
        first = second.inputs[0].producer()
        if first is None or first.op_type != "Conv" or first.domain != "":
            return False
        second_params = constant_weights(second)
        if second_params is None or not is_pointwise(second, second_params[0]):
            return False
        if not single_consumer(second.inputs[0], second):
            self.refuse(second, f"the output of Conv {first.name!r} has other readers")
            return False
        first_params = constant_weights(first)
        if first_params is None:
            self.refuse(second, f"Conv {first.name!r} has non-constant weights")
            return False
        if first.attributes.get_int("group", 1) != 1:
            self.refuse(second, f"Conv {first.name!r} is grouped: the merged Conv would be dense")
            return False
        (w1, b1), (w2, b2) = first_params, second_params
        c_mid, c_out = w1.shape[0], w2.shape[0]
        per_input = int(np.prod(w1.shape[1:]))  # C_in·k
        merged_cost, pair_cost = c_out * per_input, c_mid * per_input + c_out * c_mid
        if merged_cost > pair_cost:
            self.refuse(second, f"merging adds compute ({merged_cost} vs {pair_cost} MACs per pixel)")
            return False
        matrix = w2.reshape(c_out, c_mid)
        weight = (matrix @ w1.reshape(c_mid, -1)).reshape(c_out, *w1.shape[1:])
        dtype = constant(first.inputs[1]).dtype
        base = first.name or "Conv"
        set_constant_input(graph, first, 1, weight.astype(dtype), f"{base}.weight_merged")
        set_constant_input(graph, first, 2, (matrix @ b1 + b2).astype(dtype), f"{base}.bias_merged")
        take_over(graph, second, first.outputs[0])
        return True
