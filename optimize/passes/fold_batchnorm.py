"""Fold inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm that produces its input."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import (
    add_initializer,
    constant,
    opset_version,
    set_constant_input,
    single_consumer,
    take_over,
    unique_name,
)
from onebyone.optimize.passes.base import GraphPass

FOLDABLE = ("Conv", "ConvTranspose", "Gemm")


class FoldBatchNorm(GraphPass):
    """BN(y) = s·(y − μ) + β with s = γ/√(σ² + ε), per channel c (axis 1 of y):

    - Conv (W: C_out × C_in/g × k…):  W'[c] = s[c]·W[c],  b'[c] = s[c]·(b[c] − μ[c]) + β[c]  (b = 0 when absent)
    - ConvTranspose (W: C_in × C_out/g × k…): the same on output channel c = group·C_out/g + j, i.e. W viewed as
      g × C_in/g × C_out/g × k… is scaled along its third axis
    - Gemm (Y = α·A·B̃ + β_g·C, B̃ = Bᵀ if transB): column c of B̃ times s[c];  C' = s·(β_g·C − μ) + β, β_g' = 1
    - any other producer (or one whose output has other readers): y·s + (β − μ·s) as Mul + Add, exact.

    Refused, BatchNormalization kept: training mode (opset ≥ 14 `training_mode=1`; opset < 14 with running/saved
    statistics outputs, which selects training mode), parameters that are not constants, or an unknown input rank
    for the Mul + Add form. The folded node's output takes the BN output's name.
    """

    name = "fold_batchnorm"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        opset = opset_version(model)
        changed = self.rewrite_each(model, ("BatchNormalization",), lambda bn: self._fold(model.graph, bn, opset))
        return ir.passes.PassResult(model, changed)

    def _fold(self, graph: ir.Graph, bn: ir.Node, opset: int) -> bool:
        if self._training_mode(bn, opset):
            self.refuse(bn, "training-mode BatchNormalization normalises with batch statistics: not foldable")
            return False
        params = [constant(v) for v in bn.inputs[1:5]]
        if any(p is None for p in params):
            self.refuse(bn, "scale, bias, mean or variance is not a constant")
            return False
        gamma, beta, mean, var = (p.astype(np.float64) for p in params)
        epsilon = bn.attributes.get_float("epsilon", 1e-5)
        scale = gamma / np.sqrt(var + epsilon)
        shift = beta - mean * scale
        producer = bn.inputs[0].producer()
        if producer is not None and producer.op_type in FOLDABLE and producer.domain == "":
            if not single_consumer(bn.inputs[0], bn):
                self.refuse(bn, f"{producer.op_type} output {bn.inputs[0].name!r} has other readers: folding would "
                                "change them; BN becomes Mul + Add instead")
            elif (reason := self._fold_into(graph, producer, scale, mean, beta)) is None:
                take_over(graph, bn, producer.outputs[0])
                return True
            else:
                self.refuse(bn, f"not folded into {producer.op_type}: {reason}; BN becomes Mul + Add instead")
        return self._scale_shift(graph, bn, scale, shift)

    @staticmethod
    def _training_mode(bn: ir.Node, opset: int) -> bool:
        if opset >= 14:
            return bn.attributes.get_int("training_mode", 0) == 1
        return any(out.name for out in bn.outputs[1:])

    def _fold_into(self, graph: ir.Graph, node: ir.Node, scale: np.ndarray, mean: np.ndarray,
                   beta: np.ndarray) -> str | None:
        """Rewrite `node`'s weight and bias in place; return why not, when it cannot."""
        weight = constant(node.inputs[1])
        if weight is None:
            return "its weight is not a constant"
        bias_index = 2
        bias = constant(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
        if len(node.inputs) > 2 and node.inputs[2] is not None and bias is None:
            return "its bias is not a constant"
        dtype = weight.dtype
        w = weight.astype(np.float64)
        if node.op_type == "Conv":
            if len(scale) != w.shape[0]:
                return f"{len(scale)} BN channels for {w.shape[0]} output channels"
            new_w = w * scale.reshape(-1, *[1] * (w.ndim - 1))
            old_b = np.zeros(w.shape[0]) if bias is None else bias.astype(np.float64)
        elif node.op_type == "ConvTranspose":
            groups = node.attributes.get_int("group", 1)
            per_group = w.shape[1]
            if len(scale) != groups * per_group:
                return f"{len(scale)} BN channels for {groups * per_group} output channels"
            grouped = w.reshape(groups, w.shape[0] // groups, per_group, *w.shape[2:])
            new_w = (grouped * scale.reshape(groups, 1, per_group, *[1] * (w.ndim - 2))).reshape(w.shape)
            old_b = np.zeros(len(scale)) if bias is None else bias.astype(np.float64)
        else:
            new_w, old_b = self._gemm(node, w, scale, bias)
            if new_w is None:
                return "its output is not (batch, channels)"
        new_b = scale * (old_b - mean) + beta
        set_constant_input(graph, node, 1, new_w.astype(dtype), f"{node.name or node.op_type}.weight_bnfolded")
        set_constant_input(graph, node, bias_index, new_b.astype(dtype), f"{node.name or node.op_type}.bias_bnfolded")
        return None

    @staticmethod
    def _gemm(node: ir.Node, w: np.ndarray, scale: np.ndarray,
              bias: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
        """Gemm: scale output column c; the bias absorbs β_g (which is then set to 1)."""
        trans_b = node.attributes.get_int("transB", 0) == 1
        columns = w.shape[0] if trans_b else w.shape[1]
        if w.ndim != 2 or columns != len(scale):
            return None, np.zeros(0)
        new_w = w * (scale[:, None] if trans_b else scale[None, :])
        beta_g = node.attributes.get_float("beta", 1.0)
        old_b = np.zeros(len(scale)) if bias is None else beta_g * bias.astype(np.float64)
        node.attributes["beta"] = ir.AttrFloat32("beta", 1.0)
        return new_w, np.broadcast_to(old_b, np.broadcast_shapes(old_b.shape, scale.shape)).copy()

    def _scale_shift(self, graph: ir.Graph, bn: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
        x = bn.inputs[0]
        if x.shape is None:
            self.refuse(bn, "input rank unknown: cannot broadcast a per-channel Mul + Add; run shape inference")
            return False
        dtype = constant(bn.inputs[1]).dtype
        broadcast = (-1, *[1] * (len(x.shape) - 2))
        base = bn.name or "BatchNormalization"
        mul = ir.node("Mul", [x, add_initializer(graph, f"{base}.scale", scale.reshape(broadcast).astype(dtype))],
                      name=f"{base}/Mul", outputs=[ir.val(unique_name(graph, f"{base}/Mul_output_0"))])
        add = ir.node("Add", [mul.outputs[0],
                              add_initializer(graph, f"{base}.shift", shift.reshape(broadcast).astype(dtype))],
                      name=f"{base}/Add")
        graph.insert_before(bn, [mul, add])
        take_over(graph, bn, add.outputs[0])
        return True
