"""Merge a Conv followed directly by a linear 1x1 Conv into one Conv."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import (
    constant,
    constant_weights,
    is_pointwise,
    set_constant_input,
    single_consumer,
    take_over,
)
from onebyone.optimize.passes.base import GraphPass


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
