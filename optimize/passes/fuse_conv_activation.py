"""ONNX Runtime target: Conv + Relu/Clip and Conv + Add + Relu as one com.microsoft.FusedConv."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import constant, opset_version, sole_reader, take_over
from onebyone.optimize.passes.base import GraphPass

MS_DOMAIN = "com.microsoft"


class FuseConvActivation(GraphPass):
    """FusedConv(X, W, B, Z) = act(W∗X + B + Z) in ORT's com.microsoft domain (Z optional), for:

    - Conv → Relu:                 act = Relu
    - Conv → Clip(min, max):       act = Clip, activation_params = [min, max] (constants; ReLU6)
    - Conv → Add(·, Z) → Relu:     act = Relu with the residual Z, when Z has exactly the Conv output's shape

    each intermediate read only by the next node. The FusedConv's output takes the activation's output name.
    This is what ORT's own optimizer does at ORT_ENABLE_EXTENDED; done ahead of time the saved model runs fused at
    any ORT optimization level. Other targets keep the nodes plain (TensorRT fuses them itself).
    """

    name = "fuse_conv_activation"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        opset = opset_version(model)
        changed = self.rewrite_each(model, ("Conv",), lambda conv: self._fuse(model.graph, conv, opset))
        if changed:
            model.opset_imports.setdefault(MS_DOMAIN, 1)
        return ir.passes.PassResult(model, changed)

    def _fuse(self, graph: ir.Graph, conv: ir.Node, opset: int) -> bool:
        out = conv.outputs[0]
        z = None
        activation = sole_reader(out, "Relu")
        params: list[float] = []
        if activation is None and (clip := sole_reader(out, "Clip")) is not None:
            bounds = self._clip_bounds(clip, opset)
            if bounds is None:
                return False
            activation, params = clip, bounds
        if activation is None and (add := sole_reader(out, "Add")) is not None:
            z = add.inputs[1] if add.inputs[0] is out else add.inputs[0]
            activation = sole_reader(add.outputs[0], "Relu")
            if activation is None or z is out:
                return False
            if z.shape is None or out.shape is None or list(z.shape) != list(out.shape):
                self.refuse(add, f"residual {z.name!r} shape {z.shape} is not the Conv output's {out.shape}")
                return False
        if activation is None:
            return False
        inputs = [*conv.inputs, *[None] * (3 - len(conv.inputs))]
        attributes = {name: attr.value for name, attr in conv.attributes.items()}
        attributes["activation"] = "Clip" if params else "Relu"
        if params:
            attributes["activation_params"] = params
        fused = ir.node("FusedConv", [*inputs, *([z] if z is not None else [])], attributes, domain=MS_DOMAIN,
                        name=conv.name, num_outputs=1)
        graph.insert_before(activation, fused)  # where every input is computed, the residual Z included
        middle = activation.inputs[0].producer()
        take_over(graph, activation, fused.outputs[0])
        if middle is not conv:
            graph.remove(middle, safe=True)
        graph.remove(conv, safe=True)
        return True

    def _clip_bounds(self, clip: ir.Node, opset: int) -> list[float] | None:
        if opset < 11:
            return [clip.attributes.get_float("min", float(np.finfo(np.float32).min)),
                    clip.attributes.get_float("max", float(np.finfo(np.float32).max))]
        inputs = [*clip.inputs, None, None]
        bounds = [constant(inputs[1]), constant(inputs[2])]
        if any(b is None for b in bounds):
            self.refuse(clip, "Clip without constant min and max")
            return None
        return [float(b) for b in bounds]
