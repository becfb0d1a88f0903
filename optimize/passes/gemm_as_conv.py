"""A Gemm or MatMul classifier on flattened N×C×1×1 features as a 1x1 Conv (then Flatten)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import add_initializer, constant, take_over, unique_name
from onebyone.optimize.passes.base import GraphPass


def flattened_pixel(value: ir.Value) -> ir.Value | None:
    """X when `value` = Flatten(X, axis=1) and X is N×C×1×…×1 (one pixel per sample), else None."""
    flatten = value.producer()
    if flatten is None or flatten.op_type != "Flatten" or flatten.domain != "":
        return None
    source = flatten.inputs[0]
    if flatten.attributes.get_int("axis", 1) != 1 or source.shape is None or len(source.shape) < 3:
        return None
    return source if all(d == 1 for d in source.shape[2:]) else None


class GemmAsConv(GraphPass):
    """Y = α·A·B̃ + β·C (Gemm, B̃ = Bᵀ if transB; MatMul: α = 1, no C) with A = Flatten(X), X of shape N×C×1×…×1,
    is Flatten(Conv(X, W, b)) with the 1x1 kernel W[k, c, 1…] = α·B̃[c, k] and b = β·C (C of shape (K,), (1, K) or
    a scalar). Requires constant B and C and transA = 0. The Flatten's output takes the Gemm's output name.
    """

    name = "gemm_as_conv"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        changed = self.rewrite_each(model, ("Gemm", "MatMul"), lambda node: self._rewrite(model.graph, node))
        return ir.passes.PassResult(model, changed)

    def _rewrite(self, graph: ir.Graph, node: ir.Node) -> bool:
        source = flattened_pixel(node.inputs[0])
        if source is None:
            return False
        matrix = constant(node.inputs[1])
        if matrix is None or matrix.ndim != 2:
            self.refuse(node, "weight is not a constant matrix")
            return False
        attrs = node.attributes
        if node.op_type == "Gemm" and attrs.get_int("transA", 0) == 1:
            self.refuse(node, "transA = 1 reads the features transposed")
            return False
        b_tilde = matrix.T if node.op_type == "Gemm" and attrs.get_int("transB", 0) == 1 else matrix
        outputs = b_tilde.shape[1]
        weight = (attrs.get_float("alpha", 1.0) if node.op_type == "Gemm" else 1.0) * b_tilde.T.astype(np.float64)
        bias = np.zeros(outputs)
        if node.op_type == "Gemm" and len(node.inputs) > 2 and node.inputs[2] is not None:
            c = constant(node.inputs[2])
            if c is None or c.size not in (1, outputs) or (c.ndim == 2 and c.shape[0] != 1):
                self.refuse(node, "C is not a constant per-output bias")
                return False
            bias = attrs.get_float("beta", 1.0) * np.broadcast_to(c.reshape(-1).astype(np.float64), (outputs,))
        kernel = weight.reshape(outputs, -1, *[1] * (len(source.shape) - 2)).astype(matrix.dtype)
        base = node.name or node.op_type
        conv = ir.node("Conv", [source, add_initializer(graph, f"{base}.weight_conv", kernel),
                                add_initializer(graph, f"{base}.bias_conv", bias.astype(matrix.dtype))],
                       name=f"{base}/Conv", outputs=[ir.val(unique_name(graph, f"{base}/Conv_output_0"))])
        flatten = ir.node("Flatten", [conv.outputs[0]], {"axis": 1}, name=f"{base}/Flatten")
        flatten.outputs[0].dtype, flatten.outputs[0].shape = node.outputs[0].dtype, node.outputs[0].shape
        graph.insert_before(node, [conv, flatten])
        old_flatten = node.inputs[0].producer()
        take_over(graph, node, flatten.outputs[0])
        if not old_flatten.outputs[0].uses() and not old_flatten.outputs[0].is_graph_output():
            graph.remove(old_flatten, safe=True)
        return True
