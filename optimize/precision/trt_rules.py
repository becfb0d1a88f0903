"""What TensorRT's ONNX parser accepts in an explicitly quantized graph, and where the `trt` flavour puts Q/DQ,
checked before a `trt` model is written.

Parser rules: every QuantizeLinear/DequantizeLinear has an INT8 zero point that is a constant 0 (INT8 on both sides
of the pair); its scale is a constant, finite and positive, FP32 or FP16, of the type of the pair's float side
(QuantizeLinear's input, DequantizeLinear's output); a scale with more than one element (per-channel) only
quantizes a constant (a weight).

Placement rules (optimize/precision/qdq.py), for every node not left float on purpose (`float_nodes`): a Conv,
ConvTranspose, Gemm or MatMul reads its data input(s) and its constant weight through DequantizeLinear (a weight
computed in the graph is not stored as INT8); an AveragePool or
GlobalAveragePool reads its input through one; a Gemm/MatMul too small for INT8 GEMMs (`small_gemm`) reads none.
With FP16 float parts, a Cast reads a graph input or writes a graph output, unless it serves a node kept FP32
(`fp32_nodes`): nothing else converts between float types inside the network.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import constant
from onebyone.optimize.precision.qdq import POOLS, WEIGHTED, small_gemm

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
SCALE_TYPES = (ir.DataType.FLOAT, ir.DataType.FLOAT16)


def trt_violations(model: ir.Model, float_nodes: Collection[str] = (),
                   fp32_nodes: Collection[str] | None = None) -> list[str]:
    """Every rule broken, one line per node; empty when TensorRT can parse the Q/DQ as written and the placement is
    the `trt` flavour's. `float_nodes`: nodes left float on purpose; `fp32_nodes`: with FP16 float parts, the
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
    elif not (np.isfinite(scale).all() and (scale > 0).all()):
        problems.append("scale is not finite and positive")
    elif scale.size > 1 and constant(data) is None:
        problems.append("per-channel scale on an activation (allowed only on weights)")
    float_side = data if node.op_type == "QuantizeLinear" else node.outputs[0]
    if scale_value.dtype not in SCALE_TYPES:
        problems.append(f"scale is {scale_value.dtype}, not FLOAT or FLOAT16")
    elif float_side.dtype is not None and float_side.dtype != scale_value.dtype:
        problems.append(f"scale is {scale_value.dtype} but the float side is {float_side.dtype}")
    if zero_point is None:
        problems.append("no zero point (QuantizeLinear would produce UINT8)")
    else:
        zero = constant(zero_point)
        if zero is None:
            problems.append("zero point is not a constant")
        else:
            if zero_point.dtype != ir.DataType.INT8:
                problems.append(f"zero point is {zero_point.dtype}, not INT8")
            if np.any(zero != 0):
                problems.append("zero point is not 0")
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
