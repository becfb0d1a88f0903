"""A 1x1 Conv on one pixel per sample, then Flatten, as Flatten then Gemm."""

from __future__ import annotations

import onnx_ir as ir

from onebyone.optimize.graph import (
    add_initializer,
    constant,
    constant_weights,
    drop_if_unused,
    is_pointwise,
    sole_reader,
    take_over,
    unique_name,
)
from onebyone.optimize.passes.base import GraphPass


class ConvAsGemm(GraphPass):
    """Flatten(Conv(X, W, b)) with X of shape N×C×1×…×1, a 1x1 kernel, stride 1, no padding and group 1 is
    Gemm(Flatten(X), W.reshape(K, C), b, transB=1): at a single pixel a 1x1 Conv is a matrix product. The Conv
    output must be read only by the Flatten (axis 1), whose output name the Gemm takes.
    """

    name = "conv_as_gemm"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        changed = self.rewrite_each(model, ("Conv",), lambda conv: self._rewrite(model.graph, conv))
        return ir.passes.PassResult(model, changed)

    @staticmethod
    def _rewrite(graph: ir.Graph, conv: ir.Node) -> bool:
        source = conv.inputs[0]
        flatten = sole_reader(conv.outputs[0], "Flatten")
        params = constant_weights(conv)
        if (flatten is None or params is None or flatten.attributes.get_int("axis", 1) != 1 or source.shape is None
                or len(source.shape) < 3 or any(d != 1 for d in source.shape[2:])):
            return False
        weight, bias = params
        if not is_pointwise(conv, weight):
            return False
        dtype = constant(conv.inputs[1]).dtype
        base = conv.name or "Conv"
        flat = ir.node("Flatten", [source], {"axis": 1}, name=f"{base}/Flatten",
                       outputs=[ir.val(unique_name(graph, f"{base}/Flatten_output_0"))])
        gemm = ir.node("Gemm", [flat.outputs[0],
                                add_initializer(graph, f"{base}.weight_gemm", weight.reshape(weight.shape[0], -1)
                                                .astype(dtype)),
                                add_initializer(graph, f"{base}.bias_gemm", bias.astype(dtype))],
                       {"transB": 1}, name=f"{base}/Gemm")
        gemm.outputs[0].dtype, gemm.outputs[0].shape = flatten.outputs[0].dtype, flatten.outputs[0].shape
        graph.insert_before(conv, [flat, gemm])
        take_over(graph, flatten, gemm.outputs[0])
        conv_params = conv.inputs[1:]
        graph.remove(conv, safe=True)
        for value in conv_params:
            drop_if_unused(graph, value)
        return True
