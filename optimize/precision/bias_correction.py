"""Bias correction: the mean error that rounding a layer's weights adds to its outputs, measured on the calibration
data and taken out of its bias.

Algebra. A weighted layer computes y = W ⊛ x + b, linear in W. Quantizing the weights gives W' = W + ΔW, so
y' = y + ΔW ⊛ x, and over the calibration data, per output channel o,

    E[y'_o] − E[y_o] = Σ_{i,k} ΔW[o, i, k] · M[i, k],   M[i, k] = E_{samples, output positions}[x_pad[i, p·s + k·d]]

where M, the *tap means*, is the mean of the (zero-padded) input that kernel tap k of input channel i reads, over
every output position p (stride s, dilation d) and calibration sample: exact, borders included, because the
expectation of a linear map is the map of the expectation. For Gemm, M[k] is the mean of input feature k, and
y = α·A·W + β·C: the corrected bias input is C' = C − (α/β) · ΔW·M. It makes the mean of every output channel on the
calibration data what the float layer computes (before its input is quantized too: this corrects the weights' error
only). Rounding errors are zero-mean per weight but not per channel once multiplied by an input whose mean is not
zero (post-ReLU activations), and depthwise layers, with 9–25 weights per channel, average nothing out (what it buys
on real networks: docs/precision.md). The method of Nagel et al., "Data-Free Quantization" (2019) §4.2, in its
empirical form (as NNCF's FastBiasCorrection), with the means of the float model's own inputs.

Tap means are statistics like min/max: collected while streaming the calibration data (a few numbers per input
channel and tap, whatever the sample count) and kept in calib.json.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import constant


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """What a Conv's tap means depend on: kernel shape, strides, dilations and begin/end pads per spatial axis."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]  # begin pads, then end pads (ONNX order)

    @classmethod
    def of(cls, node: ir.Node, kernel: tuple[int, ...]) -> ConvGeometry | None:
        """The geometry of a Conv node with explicit pads (None for auto_pad other than NOTSET)."""
        attributes = node.attributes
        if attributes.get_string("auto_pad", "NOTSET") != "NOTSET":
            return None
        rank = len(kernel)
        return cls(kernel, tuple(attributes.get_ints("strides", [1] * rank)),
                   tuple(attributes.get_ints("dilations", [1] * rank)),
                   tuple(attributes.get_ints("pads", [0] * 2 * rank)))

    def tap_sums(self, batch: np.ndarray) -> tuple[np.ndarray, int]:
        """(Σ over samples and output positions of the padded input under each tap, shape (C, *kernel); the number
        of (sample, output position) pairs summed)."""
        rank = len(self.kernel)
        padding = [(0, 0), (0, 0)] + [(self.pads[a], self.pads[a + rank]) for a in range(rank)]
        padded = np.pad(batch.astype(np.float64, copy=False), padding)
        outputs = [(padded.shape[2 + a] - self.dilations[a] * (self.kernel[a] - 1) - 1) // self.strides[a] + 1
                   for a in range(rank)]
        sums = np.zeros((batch.shape[1], *self.kernel))
        for tap in itertools.product(*(range(k) for k in self.kernel)):
            window = tuple(slice(t * d, t * d + s * (n - 1) + 1, s)
                           for t, d, s, n in zip(tap, self.dilations, self.strides, outputs, strict=True))
            sums[(slice(None), *tap)] = padded[(slice(None), slice(None), *window)].sum(axis=(0, *range(2, 2 + rank)))
        return sums, batch.shape[0] * int(np.prod(outputs))


@dataclasses.dataclass
class TapMeans:
    """Running tap means of one weighted node's data input (Conv: per channel and tap; Gemm: per feature)."""

    geometry: ConvGeometry | None  # None: a Gemm
    sums: np.ndarray | None = None
    count: int = 0

    def update(self, batch: np.ndarray) -> None:
        if self.geometry is not None:
            sums, count = self.geometry.tap_sums(batch)
        else:
            rows = batch.reshape(-1, batch.shape[-1]).astype(np.float64, copy=False)
            sums, count = rows.sum(axis=0), rows.shape[0]
        self.sums = sums if self.sums is None else self.sums + sums
        self.count += count

    @property
    def means(self) -> np.ndarray:
        assert self.sums is not None and self.count > 0, "no batch seen"
        return self.sums / self.count


def tap_means_of(model: ir.Model) -> dict[str, tuple[str, TapMeans]]:
    """node name → (the tensor it reads, an empty accumulator) for every layer bias correction applies to: a Conv
    with a constant weight and explicit pads, a Gemm without transA whose bias is absent or one per output."""
    found: dict[str, tuple[str, TapMeans]] = {}
    for node in model.graph:
        weight = constant(node.inputs[1]) if node.domain == "" and len(node.inputs) > 1 else None
        if weight is None or node.inputs[0] is None:
            continue
        if node.op_type == "Conv" and weight.ndim >= 3:
            geometry = ConvGeometry.of(node, tuple(weight.shape[2:]))
            if geometry is not None:
                found[node.name] = (node.inputs[0].name, TapMeans(geometry))
        elif node.op_type == "Gemm" and node.attributes.get_int("transA", 0) == 0 and _vector_bias(node, weight):
            found[node.name] = (node.inputs[0].name, TapMeans(None))
    return found


def _vector_bias(gemm: ir.Node, weight: np.ndarray) -> bool:
    """The Gemm's C is absent or a constant vector with one entry per output column."""
    if len(gemm.inputs) < 3 or gemm.inputs[2] is None:
        return True
    bias = constant(gemm.inputs[2])
    columns = weight.shape[0 if gemm.attributes.get_int("transB", 0) else 1]
    return bias is not None and bias.shape == (columns,)


def corrected_bias(node: ir.Node, weight_error: np.ndarray, means: np.ndarray, bias: np.ndarray | None
                   ) -> np.ndarray:
    """The bias input that takes E[ΔW ⊛ x] out of the node's outputs (float64; `bias` None: the node has none)."""
    shift = output_shift(node, weight_error, means)
    if node.op_type == "Gemm":
        shift = shift / node.attributes.get_float("beta", 1.0)
    return (np.zeros_like(shift) if bias is None else bias.astype(np.float64)) - shift


def output_shift(node: ir.Node, weight_error: np.ndarray, means: np.ndarray) -> np.ndarray:
    """E[ΔW ⊛ x] per output channel: Σ_{i,k} ΔW[o, i, k] · M[i, k] (a Conv's groups each read their own slice of
    input channels); Gemm: alpha · ΔW·M with ΔW in the orientation transB says."""
    if node.op_type == "Conv":
        groups = node.attributes.get_int("group", 1)
        per_group = weight_error.shape[0] // groups
        inputs = weight_error.shape[1]
        return np.concatenate([
            np.tensordot(weight_error[g * per_group:(g + 1) * per_group], means[g * inputs:(g + 1) * inputs],
                         axes=weight_error.ndim - 1) for g in range(groups)])
    transposed = node.op_type == "Gemm" and node.attributes.get_int("transB", 0) == 1
    shift = weight_error @ means if transposed else means @ weight_error
    return shift * (node.attributes.get_float("alpha", 1.0) if node.op_type == "Gemm" else 1.0)
