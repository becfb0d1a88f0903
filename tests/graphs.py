"""Building small ONNX test graphs (and a Q/DQ one), and checking a pass against ONNX Runtime before and after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from onebyone.optimize.passes.base import GraphPass
from onebyone.optimize.precision.qdq import TensorRange, insert_qdq
from onebyone.optimize.verify import random_inputs, run_model

REL_TOL = 1e-5  # FP32 rewrites: max|after − before| ≤ 1e-5 · max|before|


def tensor_input(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[str],
          initializers: dict[str, np.ndarray], opset: int = 18) -> ir.Model:
    graph = helper.make_graph(nodes, "fixture", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                         for o in outputs],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in initializers.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    proto = onnx.shape_inference.infer_shapes(proto)
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def bn_params(prefix: str, channels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """γ, β, μ, σ² with non-trivial values (σ² > 0)."""
    return {f"{prefix}.gamma": rng.uniform(0.5, 1.5, channels), f"{prefix}.beta": rng.normal(0, 0.5, channels),
            f"{prefix}.mean": rng.normal(0, 0.5, channels), f"{prefix}.var": rng.uniform(0.2, 2.0, channels)}


def bn_node(x: str, y: str, prefix: str, **attributes: object) -> onnx.NodeProto:
    return helper.make_node("BatchNormalization", [x, f"{prefix}.gamma", f"{prefix}.beta", f"{prefix}.mean",
                                                   f"{prefix}.var"], [y], name=prefix, **attributes)


def ops(m: ir.Model) -> list[str]:
    return [node.op_type for node in m.graph]


def apply_and_compare(m: ir.Model, graph_pass: GraphPass, rng: np.random.Generator) -> tuple[bool, float]:
    """Run the pass in place; return (changed, relative max error of the outputs) on fresh random inputs."""
    inputs = random_inputs(m.graph, rng)
    before = run_model(m, inputs)
    changed = graph_pass(m).modified
    after = run_model(m, inputs)
    assert set(after) == set(before), "graph outputs changed names"
    error = max(float(np.abs(after[k] - before[k]).max()) for k in before)
    scale = max(float(np.abs(before[k]).max()) for k in before)
    for k in before:
        assert after[k].shape == before[k].shape and np.isfinite(after[k]).all()
    return changed, error / scale


LAYERS = ("conv", "pointwise", "depthwise", "bn", "relu", "mul", "add", "siblings", "residual", "concat", "shared",
          "multibn")


class Builder:
    """Appends layers to an ONNX graph under construction, tracking the current tensor and its channel count."""

    def __init__(self, seed: int, channels: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.init: dict[str, np.ndarray] = {}
        self.current, self.channels = "x", channels

    def name(self, kind: str) -> str:
        return f"{kind}{len(self.nodes)}"

    def conv(self, x: str, channels_out: int, kernel: int, groups: int = 1, bias: bool = True) -> str:
        name = self.name("conv")
        self.init[f"{name}.W"] = self.rng.normal(0, 0.5, (channels_out, self.channels // groups, kernel, kernel))
        inputs = [x, f"{name}.W"]
        if bias:
            self.init[f"{name}.B"] = self.rng.normal(0, 0.5, channels_out)
            inputs.append(f"{name}.B")
        self.nodes.append(helper.make_node("Conv", inputs, [name], name=name, group=groups,
                                           pads=[kernel // 2] * 4))
        return name

    def elementwise(self, op: str, const: np.ndarray) -> None:
        name = self.name(op.lower())
        self.init[f"{name}.c"] = const
        self.nodes.append(helper.make_node(op, [self.current, f"{name}.c"], [name], name=name))
        self.current = name

    def add_layer(self, kind: str, width: int, flag: bool) -> None:
        c = self.channels
        if kind in ("conv", "pointwise"):
            self.current, self.channels = self.conv(self.current, width, 3 if kind == "conv" else 1, bias=flag), width
        elif kind == "depthwise":
            self.current = self.conv(self.current, c, 3, groups=c, bias=flag)
        elif kind == "bn":
            name = self.name("bn")
            self.init |= bn_params(name, c, self.rng)
            self.nodes.append(bn_node(self.current, name, name))
            self.current = name
        elif kind == "relu":
            name = self.name("relu")
            self.nodes.append(helper.make_node("Relu", [self.current], [name]))
            self.current = name
        elif kind == "mul":
            self.elementwise("Mul", self.rng.uniform(-2, 2, (1, c, 1, 1) if flag else ()))
        elif kind == "add":
            self.elementwise("Add", self.rng.normal(0, 1, (c, 1, 1) if flag else ()))
        elif kind == "siblings":  # two or three 1x1 branches, summed: the shape of an Inception or stage entry
            branches = [self.conv(self.current, width, 1, bias=flag) for _ in range(3 if flag else 2)]
            total = branches[0]
            for branch in branches[1:]:
                name = self.name("sum")
                self.nodes.append(helper.make_node("Add", [total, branch], [name]))
                total = name
            self.current, self.channels = total, width
        elif kind == "concat":  # a Fire module: 1x1 and 3x3 expansions of the same tensor, joined on channels
            left, right = self.conv(self.current, width, 1, bias=flag), self.conv(self.current, width, 3, bias=flag)
            name = self.name("concat")
            self.nodes.append(helper.make_node("Concat", [left, right], [name], axis=1))
            self.current, self.channels = name, 2 * width
        elif kind == "shared":  # two Convs reading one weight initializer (tied or deduplicated weights), summed
            first = self.conv(self.current, c, 1, bias=False)
            second = self.name("tied")
            self.nodes.append(helper.make_node("Conv", [self.current, f"{first}.W"], [second], name=second))
            total = self.name("sum")
            self.nodes.append(helper.make_node("Add", [first, second], [total]))
            self.current = total
        elif kind == "multibn":  # a BatchNorm read by two branches (a Conv and the identity): DenseNet's pre-activation
            name = self.name("bn")
            self.init |= bn_params(name, c, self.rng)
            self.nodes.append(bn_node(self.current, name, name))
            branch = self.conv(name, c, 1, bias=flag)
            total = self.name("sum")
            self.nodes.append(helper.make_node("Add", [name, branch], [total]))
            self.current = total
        else:  # residual: x + BN(Conv3x3(x))
            body = self.conv(self.current, c, 3, bias=flag)
            name = self.name("bn")
            self.init |= bn_params(name, c, self.rng)
            self.nodes.append(bn_node(body, name, name))
            total = self.name("residual")
            self.nodes.append(helper.make_node("Add", [self.current, name], [total]))
            self.current = total

    def gemm_head(self, classes: int) -> None:
        """GlobalAveragePool → Flatten → Gemm (transB, as torch's Linear exports): a classifier head."""
        pooled, flat, logits = self.name("gap"), self.name("flatten"), self.name("gemm")
        self.init[f"{logits}.W"] = self.rng.normal(0, 0.5, (classes, self.channels))
        self.init[f"{logits}.B"] = self.rng.normal(0, 0.5, classes)
        self.nodes += [helper.make_node("GlobalAveragePool", [self.current], [pooled]),
                       helper.make_node("Flatten", [pooled], [flat]),
                       helper.make_node("Gemm", [flat, f"{logits}.W", f"{logits}.B"], [logits], name=logits, transB=1)]
        self.current = logits


CHANNELS_IN, CHANNELS_OUT, PIXELS = 16, 8, 10
AMAX = 4.0  # the calibrated range of the Conv's input: [0, AMAX] → U8, zero point 0


def pointwise_qdq(rng: np.random.Generator, weight_range: str, folder: Path) -> Path:
    """A 1x1 Conv (no bias) quantized by onebyone's Q/DQ insertion (`ort` flavour: U8 input, S8 weights)."""
    weight = rng.normal(0, 1, (CHANNELS_OUT, CHANNELS_IN, 1, 1))
    graph = model([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")],
                  [tensor_input("x", ["N", CHANNELS_IN, 1, PIXELS])], ["y"], {"w": weight})
    insert_qdq(graph, {"x": TensorRange(AMAX, 0.0, AMAX)}, "ort", set(), weight_range)
    path = folder / f"pointwise-{weight_range}.onnx"
    ir.save(graph, path)
    return path
