"""TensorRT's contract for QuantizeLinear/DequantizeLinear beyond the operator table, each rule with its source:

- NvInfer.h `IQuantizeLayer`/`IDequantizeLayer` (NVIDIA/TensorRT `include/NvInfer.h` on `release/<version>`): scale
  coefficients strictly positive; the zero point a build-time constant of zeros with the scale's size; scale and
  zero point of rank ≤ 2; per-channel scales only for weights (the data rooted at a constant); block quantization only
  for FP4/FP8/INT4; from 10.16 (the text is not in 10.0's header), in strongly typed networks a half or bf16 scale has
  the data's float type.
- onnx-tensorrt `QuantDequantLinearHelper` (onnxOpImporters.cpp at eb43908b, TensorRT 10.0): a scale with a dynamic
  shape is refused; a QuantizeLinear without a zero point (ONNX: UINT8 output) is imported as INT8, so values the file
  clamps at 0 TensorRT keeps negative.

Each rule is a `Rule`: its words, where it is stated, the fix, and the check (restrictions.Finding)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onebyone.runtime.preflight.facts import Facts
from onebyone.runtime.preflight.restrictions import Finding

QDQ = ("QuantizeLinear", "DequantizeLinear")
LOW_BITS = (ir.DataType.INT4, ir.DataType.FLOAT8E4M3FN, ir.DataType.FLOAT4E2M1)
HALF = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)
IMPORTER = "onnx/onnx-tensorrt onnxOpImporters.cpp QuantDequantLinearHelper @ eb43908b (TensorRT 10.0)"


@dataclasses.dataclass(frozen=True)
class Rule:
    text: str
    where: str  # "header": NvInfer.h of the linted release; "importer": onnx-tensorrt's Q/DQ importer
    fix: str
    check: Callable[[ir.Node, Facts], Finding | None]
    since: str = "10.0"  # the first known release whose source states it

    def source(self, tensorrt: str) -> str:
        if self.where == "header":
            return f"NVIDIA/TensorRT include/NvInfer.h IQuantizeLayer/IDequantizeLayer (release/{tensorrt})"
        return IMPORTER


def _parts(node: ir.Node) -> tuple[ir.Value, ir.Value, ir.Value | None]:
    zero = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] is not None and node.inputs[2].name else None
    return node.inputs[0], node.inputs[1], zero


def _positive_scale(node: ir.Node, facts: Facts) -> Finding | None:
    scale = facts.constant(_parts(node)[1])
    if scale is None:
        return None
    bad = ~(np.isfinite(scale.astype(np.float64)) & (scale > 0))
    return Finding(f"{int(bad.sum())} of {scale.size} scale coefficients are not positive") if bad.any() else None


def _static_scale(node: ir.Node, facts: Facts) -> Finding | None:
    scale = _parts(node)[1]
    return None if scale.shape is None or facts.static(scale) else Finding(f"the scale's shape is {scale.shape}")


def _constant_zero_point(node: ir.Node, facts: Facts) -> Finding | None:
    zero = _parts(node)[2]
    if zero is None or facts.build_time(zero):
        return None
    return Finding("the zero point is computed at run time")


def _zero_point_size(node: ir.Node, facts: Facts) -> Finding | None:
    _, scale, zero = _parts(node)
    a, b = facts.constant(scale), facts.constant(zero)
    return None if a is None or b is None or a.size == b.size else Finding(
        f"the scale has {a.size} coefficients, the zero point {b.size}")


def _scale_rank(node: ir.Node, facts: Facts) -> Finding | None:
    rank = facts.rank(_parts(node)[1])
    return None if rank is None or rank <= 2 else Finding(f"the scale has rank {rank}")


def _weights_only_per_channel(node: ir.Node, facts: Facts) -> Finding | None:
    data, scale, _ = _parts(node)
    if facts.rank(scale) != 1 or scale.shape is None or scale.shape[0] == 1:
        return None
    root, producer = data, data.producer()
    if node.op_type == "DequantizeLinear" and producer is not None and producer.op_type == "QuantizeLinear":
        root = producer.inputs[0]
    return None if facts.build_time(root) else Finding("a per-channel scale on an activation")


def _block_types(node: ir.Node, facts: Facts) -> Finding | None:
    data, scale, zero = _parts(node)
    scale_rank, data_rank = facts.rank(scale), facts.rank(data)
    if scale_rank is None or scale_rank < 2 or scale_rank != data_rank:
        return None
    quantized = data.dtype if node.op_type == "DequantizeLinear" else (zero.dtype if zero is not None else None)
    return None if quantized in LOW_BITS else Finding(f"block quantization of {quantized}")


def _half_scale_matches(node: ir.Node, facts: Facts) -> Finding | None:
    data, scale, _ = _parts(node)
    float_side = data if node.op_type == "QuantizeLinear" else node.outputs[0]
    if scale.dtype not in HALF or float_side.dtype is None or float_side.dtype == scale.dtype:
        return None
    return Finding(f"the scale is {scale.dtype}, the float side {float_side.dtype}")


def _quantize_has_zero_point(node: ir.Node, facts: Facts) -> Finding | None:
    if node.op_type != "QuantizeLinear" or _parts(node)[2] is not None or "output_dtype" in node.attributes:
        return None
    return Finding("no zero point: ONNX quantizes to UINT8 [0, 255], TensorRT to INT8 [-128, 127]", False)


RULES = (
    Rule("all scale coefficients must be strictly positive", "header",
         "recalibrate: a scale of 0 comes from a tensor that was constant during calibration", _positive_scale),
    Rule("the scale's shape must be static", "importer", "make the scale a constant", _static_scale),
    Rule("the zero point must be a build-time constant (only zeros: symmetric quantization)", "header",
         "store the zero point as an initializer", _constant_zero_point),
    Rule("the scale and the zero point must have the same size", "importer",
         "give one zero point per scale coefficient", _zero_point_size),
    Rule("the scale and zero point must have rank lower or equal to 2", "header",
         "use a per-tensor (scalar) or per-channel (1-D) scale", _scale_rank),
    Rule("per-channel quantization is supported only for weight inputs", "header",
         "quantize activations per tensor (one scale)", _weights_only_per_channel),
    Rule("block quantization is supported only for FP4, FP8 and INT4", "header",
         "quantize INT8 per tensor or per channel", _block_types),
    Rule("in a strongly typed network a half or bf16 scale must match the data's float type", "header",
         "cast the scale to the type of the tensor it quantizes (`onebyone adopt` does)", _half_scale_matches,
         since="10.16"),
    Rule("QuantizeLinear needs an INT8 zero point (without one ONNX means UINT8)", "importer",
         "give the QuantizeLinear an INT8 zero point of 0", _quantize_has_zero_point),
)
