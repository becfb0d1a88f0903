"""What TensorRT's ONNX parser accepts in an explicitly quantized graph, checked before a `trt` model is written.

Rules: every QuantizeLinear/DequantizeLinear has an INT8 zero point that is a constant 0 (INT8 on both sides of
the pair); its scale is a constant, finite and positive; a scale with more than one element (per-channel) only
quantizes a constant (a weight).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import constant

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def trt_violations(model: ir.Model) -> list[str]:
    """Every rule broken, one line per node; empty when TensorRT can parse the Q/DQ as written."""
    problems = []
    for node in model.graph:
        if node.op_type not in QDQ_OPS or node.domain != "":
            continue
        problems += [f"{node.name}: {problem}" for problem in _node_problems(node)]
    return problems


def _node_problems(node: ir.Node) -> list[str]:
    data = node.inputs[0]
    scale = constant(node.inputs[1])
    zero_point = node.inputs[2] if len(node.inputs) > 2 else None
    problems = []
    if scale is None:
        problems.append("scale is not a constant")
    elif not (np.isfinite(scale).all() and (scale > 0).all()):
        problems.append("scale is not finite and positive")
    elif scale.size > 1 and constant(data) is None:
        problems.append("per-channel scale on an activation (allowed only on weights)")
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
