"""How the `trt` flavour writes and places Q/DQ, checked before a `trt` model is written. What TensorRT's parser
accepts (zero points of 0, positive scales, per-channel scales on weights only, ...) is not here: write_artifact lints
every file made for TensorRT against the parser's published rules (runtime/preflight/).

Conventions, stricter than the parser so that ONNX Runtime and TensorRT compute the same numbers: every
QuantizeLinear/DequantizeLinear has a constant INT8 zero point (without one ONNX means UINT8); its scale is a
constant, FP32 or FP16, of the type of the pair's float side (QuantizeLinear's input, DequantizeLinear's output).

Placement rules (optimize/precision/qdq.py), for every node not left float on purpose (`float_nodes`): a Conv,
ConvTranspose, Gemm or MatMul reads its data input(s) and its constant weight through DequantizeLinear (a weight
computed in the graph is not stored as INT8); an AveragePool or
GlobalAveragePool reads its input through one; a Gemm/MatMul too small for INT8 GEMMs (`small_gemm`) reads none.
With FP16 float parts, a Cast reads a graph input or writes a graph output, unless it serves a node kept FP32
(`fp32_nodes`): nothing else converts between float types inside the network.
"""

from __future__ import annotations

from collections.abc import Collection

import onnx_ir as ir

from onebyone.optimize.graph import constant
from onebyone.optimize.precision.qdq import POOLS, WEIGHTED, small_gemm

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
SCALE_TYPES = (ir.DataType.FLOAT, ir.DataType.FLOAT16)


def trt_violations(model: ir.Model, float_nodes: Collection[str] = (),
                   fp32_nodes: Collection[str] | None = None) -> list[str]:
    """Every convention broken, one line per node; empty when the Q/DQ is written and placed as the `trt` flavour
    writes it. `float_nodes`: nodes left float on purpose; `fp32_nodes`: with FP16 float parts, the
    nodes kept FP32 (None: FP32 float parts, no Cast rule)."""
    problems = []
    for node in model.graph:
        if node.domain != "":
            continue
        if node.op_type in QDQ_OPS:
            found = _qdq_problems(node)
        elif node.op_type == "Cast":
            found = _cast_problems(node, fp32_nodes) if fp32_nodes is not None else []
        else:
            found = _placement_problems(node) if node.name not in float_nodes else []
        problems += [f"{node.name}: {problem}" for problem in found]
    return problems


def _qdq_problems(node: ir.Node) -> list[str]:
    data = node.inputs[0]
    scale_value = node.inputs[1]
    scale = constant(scale_value)
    zero_point = node.inputs[2] if len(node.inputs) > 2 else None
    problems = []
    if scale is None:
        problems.append("scale is not a constant")
    float_side = data if node.op_type == "QuantizeLinear" else node.outputs[0]
    if scale_value.dtype not in SCALE_TYPES:
        problems.append(f"scale is {scale_value.dtype}, not FLOAT or FLOAT16")
    elif float_side.dtype is not None and float_side.dtype != scale_value.dtype:
        problems.append(f"scale is {scale_value.dtype} but the float side is {float_side.dtype}")
    if zero_point is None:
        problems.append("no zero point (QuantizeLinear would produce UINT8)")
    else:
        if constant(zero_point) is None:
            problems.append("zero point is not a constant")
        elif zero_point.dtype != ir.DataType.INT8:
            problems.append(f"zero point is {zero_point.dtype}, not INT8")
    if node.op_type == "DequantizeLinear" and data.dtype not in (None, ir.DataType.INT8):
        problems.append(f"dequantizes {data.dtype}, not INT8")
    return problems


def _dequantized(value: ir.Value | None) -> bool:
    producer = value.producer() if value is not None else None
    return producer is not None and producer.op_type == "DequantizeLinear"


def _placement_problems(node: ir.Node) -> list[str]:
    if node.op_type in WEIGHTED:
        too_small = small_gemm(node)
        read = [i for i in (0, 1) if _dequantized(node.inputs[i])]
        if too_small is not None:
            return [f"quantized although {too_small}"] if read else []
        weight = constant(node.inputs[1])
        expected = [0, 1] if node.op_type == "MatMul" or (weight is not None and weight.ndim >= 2) else [0]
        return [f"input {i} is not read through DequantizeLinear" for i in expected if i not in read]
    if node.op_type in POOLS and not _dequantized(node.inputs[0]):
        return ["its input is not read through DequantizeLinear (TensorRT fuses DQ → pool → Q)"]
    return []


def _cast_problems(cast: ir.Node, fp32_nodes: Collection[str]) -> list[str]:
    source, result = cast.inputs[0], cast.outputs[0]
    at_boundary = source.is_graph_input() or result.is_graph_output()
    producer = source.producer()
    serves_fp32 = (producer is not None and producer.name in fp32_nodes) or any(
        use.node.name in fp32_nodes for use in result.uses())
    if at_boundary or serves_fp32:
        return []
    return ["a Cast inside the network with FP16 float parts (only graph inputs/outputs and FP32-kept nodes get one)"]
