"""FP16 conversion on onnx-ir: FP16 tensors inside, FP32 (by default) at the graph boundary and around nodes that
must stay FP32.

A node runs in FP16 when its op is FP16-polymorphic in every float input (`FP16_OPS`), the user did not keep it,
and neither its weights nor its calibrated activations exceed `SAFE_FP16_MAX` (FP16's largest finite value is 65504;
the 16× headroom covers inputs beyond the calibration set and sums accumulated in FP16).

Each float tensor then has a home precision (that of its producer: FP16 node, or FP32 node / graph input) and each
reader a required one. A reader that needs the other precision reads one shared `Cast` of the tensor. Constants
are converted instead of cast (FP16 copy for FP16 readers; in place when every reader is FP16). A graph output whose
home differs from the boundary precision is produced by a Cast that takes over its name; the tensor it casts is
renamed `<name>_fp16` (or `_fp32`). Values round to the nearest FP16 (x' = fp16(x)); that rounding is the only
numeric change.

An INT8 Q/DQ graph converts the same way (its float parts, the `--float-dtype fp16` of `quantize`): QuantizeLinear
reads FP16 x with an FP16 scale, DequantizeLinear writes FP16 (y = (q − z) · fp16(s)); the integer tensors are
untouched. FP16 scales need opset 19, so a model with Q/DQ and a lower opset is raised to 19 by onnxscript's
version converter (between 18 and 19 the ops a CNN uses only gained types and attributes whose defaults keep the
old behaviour). Scales are ≥ MIN_SCALE = 2⁻²³ (qdq.py), which FP16 holds exactly as a subnormal: a scale stays
positive; one below 2⁻¹⁴ (FP16's smallest normal) rounds to a multiple of 2⁻²⁴. The INT32 biases of the `ort`
flavour stay FP32: their scales s_x · s_w are mostly below 2⁻¹⁴.

Why not onnxconverter-common's converter: it rewrites protobufs, has no notion of calibrated ranges, and casts per
reader rather than per tensor; the rules here are small and tested against ORT.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
from onnxscript import version_converter

from onebyone.optimize.graph import add_initializer, constant, opset_version, unique_name

FP16_MAX = 65504.0
SAFE_FP16_MAX = FP16_MAX / 16
FP16_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization",
    "Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softmax",
    "Add", "Sub", "Mul", "Div",
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean",
    "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split", "Slice", "Identity", "Pad",
    "QuantizeLinear", "DequantizeLinear",
    "Shape",  # reads only its input's shape (a dynamic H×W's size arithmetic): any dtype
})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
FP16_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear take FP16 scales from opset 19
FLOAT = ir.DataType.FLOAT
HALF = ir.DataType.FLOAT16


@dataclasses.dataclass
class Fp16Report:
    fp16_nodes: int
    fp32_nodes: dict[str, str]  # node name → why it stays FP32
    casts: int


def convert_to_fp16(model: ir.Model, activation_amax: dict[str, float] | None, keep_fp32: set[str],
                    fp16_io: bool = False) -> Fp16Report:
    """Convert `model` in place. `activation_amax` (calibrated max |x| per tensor) keeps out-of-range nodes FP32;
    without it only weights are checked. Graph inputs/outputs stay FP32 unless `fp16_io`."""
    graph = model.graph
    if opset_version(model) < FP16_QDQ_OPSET and any(n.op_type in QDQ_OPS and n.domain == "" for n in graph):
        version_converter.convert_version(model, FP16_QDQ_OPSET)
    kept: dict[str, str] = {}
    half_nodes: set[ir.Node] = set()
    for node in graph:
        reason = _fp32_reason(node, activation_amax or {}, keep_fp32)
        if reason is None:
            half_nodes.add(node)
        elif reason:
            kept[node.name] = reason
    _qdq_follow_readers(graph, half_nodes, kept)
    casts = 0
    for value in _float_values(graph):
        casts += _place(graph, value, half_nodes, fp16_io)
    for node in half_nodes:
        for output in node.outputs:
            if output.dtype == FLOAT:
                output.dtype = HALF
    return Fp16Report(fp16_nodes=len(half_nodes), fp32_nodes=kept, casts=casts)


def _fp32_reason(node: ir.Node, activation_amax: dict[str, float], keep_fp32: set[str]) -> str | None:
    """Why `node` stays FP32; None when it converts; "" for nodes with no float tensors (nothing to say)."""
    floats = [v for v in (*node.inputs, *node.outputs) if v is not None and v.dtype == FLOAT]
    if not floats:
        return ""
    if node.name in keep_fp32:
        return "kept by the user"
    if node.domain != "" or node.op_type not in FP16_OPS:
        return f"{node.op_type} is not converted to FP16"
    if node.op_type == "DequantizeLinear" and node.inputs[0].dtype == ir.DataType.INT32:
        return "an INT32 bias: its scale s_x · s_w is below FP16's normal range"
    for value in floats:
        array = constant(value)
        largest = float(np.abs(array).max(initial=0)) if array is not None else activation_amax.get(value.name, 0.0)
        if largest > SAFE_FP16_MAX:
            kind = "weight" if array is not None else "activation"
            return f"{kind} {value.name} reaches {largest:.4g}, beyond the FP16-safe {SAFE_FP16_MAX:.4g}"
    return None


def _qdq_follow_readers(graph: ir.Graph, half_nodes: set[ir.Node], kept: dict[str, str]) -> None:
    """A DequantizeLinear takes its readers' precision, and a QuantizeLinear its DequantizeLinears', so that a node
    kept FP32 reads its DQ directly (TensorRT fuses DQ → Conv only without a Cast between them). A Q or DQ whose
    readers are of both precisions is split: a copy with the same inputs serves the FP32 readers."""
    for op_type in ("DequantizeLinear", "QuantizeLinear"):
        for node in [n for n in graph if n.op_type == op_type and n in half_nodes]:
            uses = [(use.node, use.idx) for use in node.outputs[0].uses()]
            fp32_uses = [(reader, index) for reader, index in uses if reader not in half_nodes]
            if not fp32_uses:
                continue
            target = node
            if len(fp32_uses) < len(uses):
                target = ir.Node("", op_type, list(node.inputs), attributes=list(node.attributes.values()),
                                 name=unique_name(graph, f"{node.name}_fp32"), version=node.version)
                target.outputs[0].name = unique_name(graph, f"{node.outputs[0].name}_fp32")
                target.outputs[0].dtype = node.outputs[0].dtype
                target.outputs[0].shape = node.outputs[0].shape
                graph.insert_after(node, target)
                for reader, index in fp32_uses:
                    reader.replace_input_with(index, target.outputs[0])
            else:
                half_nodes.discard(node)
            kept[target.name] = f"serves {', '.join(sorted({reader.name for reader, _ in fp32_uses}))}, kept FP32"


def _float_values(graph: ir.Graph) -> list[ir.Value]:
    values = [v for v in graph.inputs if v.dtype == FLOAT]
    values += [v for v in graph.initializers.values() if v.dtype == FLOAT and not v.is_graph_input()]
    values += [v for node in graph for v in node.outputs if v.dtype == FLOAT]
    return values


def _place(graph: ir.Graph, value: ir.Value, half_nodes: set[ir.Node], fp16_io: bool) -> int:
    """Give `value` its home precision and every reader the precision it needs; returns the Casts added."""
    readers = [(use.node, use.idx) for use in value.uses()]
    half_readers = [(node, index) for node, index in readers if node in half_nodes]
    if value.is_initializer() and not value.is_graph_input():
        _convert_constant(graph, value, half_readers, len(half_readers) == len(readers))
        return 0
    producer = value.producer()
    home_half = producer in half_nodes if producer is not None else fp16_io
    if producer is None and fp16_io:
        value.dtype = HALF
    wrong = [(n, i) for n, i in readers if (n in half_nodes) != home_half]
    casts = 0
    if wrong:
        cast = _cast(graph, value, FLOAT if home_half else HALF)
        for node, index in wrong:
            node.replace_input_with(index, cast.outputs[0])
        casts += 1
    if value.is_graph_output() and home_half != fp16_io:
        _cast_graph_output(graph, value, FLOAT if home_half else HALF)
        casts += 1
    return casts


def _convert_constant(graph: ir.Graph, value: ir.Value, half_readers: list[tuple[ir.Node, int]],
                      all_half: bool) -> None:
    if not half_readers:
        return
    array = value.const_value.numpy().astype(np.float16)
    if all_half and not value.is_graph_output():
        value.const_value = ir.tensor(array, name=value.name)
        value.dtype = HALF
        return
    half = add_initializer(graph, f"{value.name}_fp16", array)
    for node, index in half_readers:
        node.replace_input_with(index, half)


def _cast(graph: ir.Graph, value: ir.Value, to: ir.DataType) -> ir.Node:
    suffix = "fp32" if to == FLOAT else "fp16"
    cast = ir.node("Cast", [value], {"to": to}, name=unique_name(graph, f"{value.name}/Cast_{suffix}"))
    cast.outputs[0].name = unique_name(graph, f"{value.name}_{suffix}")
    cast.outputs[0].dtype = to
    cast.outputs[0].shape = value.shape
    _insert_after_producer(graph, value, cast)
    return cast


def _cast_graph_output(graph: ir.Graph, value: ir.Value, to: ir.DataType) -> None:
    """Make the graph output `value.name` a Cast of `value` to `to`; `value` itself is renamed."""
    name = value.name
    value.name = unique_name(graph, f"{name}_{'fp16' if to == FLOAT else 'fp32'}")
    cast = ir.node("Cast", [value], {"to": to}, name=unique_name(graph, f"{name}/Cast_output"))
    cast.outputs[0].name = name
    cast.outputs[0].dtype = to
    cast.outputs[0].shape = value.shape
    _insert_after_producer(graph, value, cast)
    index = next(i for i, output in enumerate(graph.outputs) if output is value)
    graph.outputs[index] = cast.outputs[0]


def _insert_after_producer(graph: ir.Graph, value: ir.Value, node: ir.Node) -> None:
    producer = value.producer()
    if producer is None:
        graph.insert_before(next(iter(graph)), node)
    else:
        graph.insert_after(producer, node)
