"""The static check of an INT8 file: which weights can overflow a non-VNNI x86 int8 dot product.

Without VNNI, x86 int8 kernels multiply u8 activations by s8 weights with `vpmaddubsw`, which adds each pair of
neighbouring products into a *saturating* int16 before widening (S8 activations are first shifted by +128 to u8, so
the bound is the same). With a₁, a₂ ∈ [0, 255]:

    a₁w₁ + a₂w₂ can leave [−32768, 32767]  ⇔  w₁, w₂ have the same sign and |w₁| + |w₂| ≥ 129

(255·129 = 32895 > 32767; 255·128 = 32640 fits; with opposite signs |a₁w₁ + a₂w₂| ≤ 255·max(|w₁|, |w₂|) ≤ 32640).
Which two weights a kernel pairs depends on how it packs the reduction axis, so a weight tensor is *overflow-prone*
when one output channel holds two same-sign weights with |w₁| + |w₂| ≥ 129: an input near 255 on both then
saturates. Weights within [-64, 64] (`quantize --weight-range safe`) never are. Checked for S8 weights read through
a DequantizeLinear by Conv/ConvTranspose/Gemm/MatMul (Q/DQ files) and for the weights of QLinearConv, ConvInteger,
QGemm, QLinearMatMul and MatMulInteger (QOperator files). U8 weights are not checked: U8 is what ONNX Runtime itself
converts overflow-prone S8 weights to on these CPUs (its `Avx2WeightS8ToU8Transformer`, u8×u8 kernels).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onebyone.runtime.bundle.onnx_file import weight_axis
from onebyone.runtime.core.cpu import Cpu
from onebyone.runtime.core.errors import Int8OverflowWarning

INT16_PAIR_LIMIT = 128  # the largest same-sign |w₁| + |w₂| whose products with 255 fit an int16
DEQUANTIZED_WEIGHT = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})  # weight: input 1, through a DQ
QOPERATOR_WEIGHT = {"QLinearConv": 3, "ConvInteger": 1, "QGemm": 3, "QLinearMatMul": 3, "MatMulInteger": 1}


@dataclasses.dataclass(frozen=True)
class OverflowProne:
    """One weight tensor whose products can saturate on a non-VNNI x86 CPU."""

    node: str
    tensor: str
    channels: int  # output channels holding an overflowing pair
    of_channels: int
    worst_pair: int  # the largest same-sign |w₁| + |w₂| in one channel (≥ 129)

    def describe(self) -> str:
        return (f"{self.tensor} ({self.node}): {self.channels}/{self.of_channels} channels, same-sign pairs up to "
                f"|w₁|+|w₂| = {self.worst_pair} > {INT16_PAIR_LIMIT}")


def worst_pairs(weights: np.ndarray, axis: int) -> np.ndarray:
    """Per output channel (along `axis`), the largest |w₁| + |w₂| over two same-sign weights of that channel."""
    values = np.moveaxis(weights.astype(np.int16), axis, 0).reshape(weights.shape[axis], -1)
    if values.shape[1] < 2:
        return np.zeros(values.shape[0], np.int16)
    positive = np.partition(np.maximum(values, 0), -2, axis=1)[:, -2:].sum(axis=1)
    negative = np.partition(np.maximum(-values, 0), -2, axis=1)[:, -2:].sum(axis=1)
    return np.maximum(positive, negative)


def _int8_weight(node: ir.Node) -> ir.Value | None:
    """The INT8 constant a weighted node multiplies by, when it has one."""
    if node.domain in ("", "ai.onnx") and node.op_type in DEQUANTIZED_WEIGHT and len(node.inputs) > 1:
        dequantize = node.inputs[1].producer() if node.inputs[1] is not None else None
        if dequantize is None or dequantize.op_type != "DequantizeLinear":
            return None
        value = dequantize.inputs[0]
    elif node.op_type in QOPERATOR_WEIGHT and len(node.inputs) > QOPERATOR_WEIGHT[node.op_type]:
        value = node.inputs[QOPERATOR_WEIGHT[node.op_type]]
    else:
        return None
    return value if value is not None and value.dtype == ir.DataType.INT8 else None


def overflow_prone(model: ir.Model) -> list[OverflowProne]:
    """Every INT8 weight of `model` that can overflow a non-VNNI x86 int8 dot product (module docstring)."""
    found = []
    for node in model.graph.all_nodes():
        value = _int8_weight(node)
        tensor = ir.convenience.get_const_tensor(value) if value is not None else None
        if tensor is None or len(tensor.shape) < 2:
            continue
        pairs = worst_pairs(tensor.numpy(), weight_axis(node, len(tensor.shape)))
        over = pairs > INT16_PAIR_LIMIT
        if over.any():
            found.append(OverflowProne(node.name, value.name, int(over.sum()), len(pairs), int(pairs.max())))
    return found


def warning(label: str, prone: list[OverflowProne], cpu: Cpu) -> str:
    """What to tell a user who runs such a file on a saturating CPU, and the fix."""
    names = "; ".join(p.describe() for p in prone[:5]) + (f"; and {len(prone) - 5} more" if len(prone) > 5 else "")
    return (f"{label} has {len(prone)} INT8 weight tensor(s) that can overflow the int8 dot products of this CPU "
            f"({cpu.cpu_class}, no VNNI): {names}. Its outputs may differ from what its Q/DQ defines; re-quantize "
            "it with `onebyone quantize --weight-range safe` (weights in [-64, 64]), or run it where int8 products "
            "accumulate in int32 (VNNI/AMX CPUs, TensorRT)")


def warn_if_overflow_prone(path: Path, cpu: Cpu) -> None:
    """On a CPU whose int8 dot products saturate, warn (Int8OverflowWarning) when the file has INT8 weights that
    can overflow them; elsewhere nothing is read. Every CPU backend calls it when it opens an INT8 file."""
    if cpu.int8_saturates and (prone := overflow_prone(ir.load(path))):
        warnings.warn(warning(str(path), prone, cpu), Int8OverflowWarning, stacklevel=3)
