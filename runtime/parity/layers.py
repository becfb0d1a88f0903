"""Per-layer localisation: run the FP32 graph and a candidate with every shared intermediate tensor exposed, and
measure each tensor's error in the FP32 graph's topological order.

Tensors are matched by name (onebyone's passes keep names). In a Q/DQ candidate the tensor a consumer actually
reads is DequantizeLinear(QuantizeLinear(x)); that output stands for x, so the quantization of x counts at x.
Errors are accumulated batch by batch (Σd², Σr², max|d|, max|r|): memory is one batch of activations.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onebyone.runtime.bundle.golden import reference_session, run_session
from onebyone.runtime.bundle.onnx_file import activation_names, exposing, with_types
from onebyone.runtime.bundle.tolerances import TOLERANCES

BATCH = 8
JUMP_FRACTION = 0.1  # a largest jump is reported when that layer's error reaches this fraction of the bound


@dataclasses.dataclass(frozen=True)
class LayerError:
    tensor: str  # the FP32 graph's tensor
    node: str  # the node producing it in the FP32 graph
    op: str
    candidate_tensor: str  # what was compared in the candidate (a DequantizeLinear output when it stands for it)
    rel_l2: float
    max_rel: float


@dataclasses.dataclass(frozen=True)
class Localisation:
    layers: list[LayerError]
    bound: float
    first_divergence: LayerError | None  # the first layer whose rel. L2 error exceeds `bound`
    largest_jump: LayerError | None  # the layer whose error grows most beyond every layer before it

    def as_record(self) -> dict:
        return dataclasses.asdict(self)


def _dequantized_names(model: ir.Model) -> dict[str, str]:
    """x → the output of DequantizeLinear(QuantizeLinear(x)) in a Q/DQ graph."""
    stands_for: dict[str, str] = {}
    for node in model.graph:
        source = node.inputs[0].producer() if node.op_type == "DequantizeLinear" and node.inputs[0] else None
        if source is not None and source.op_type == "QuantizeLinear" and source.inputs[0] is not None:
            stands_for.setdefault(source.inputs[0].name, node.outputs[0].name)
    return stands_for


def _pairs(reference: ir.Model, candidate: ir.Model) -> list[tuple[str, str, str, str]]:
    """(reference tensor, candidate tensor, node, op) for every intermediate tensor both graphs have."""
    candidate_names = set(activation_names(candidate))
    stands_for = _dequantized_names(candidate)
    producers = {v.name: node for node in reference.graph for v in node.outputs}
    pairs = []
    for name in activation_names(reference):
        if name not in producers:  # a graph input: identical by construction
            continue
        match = stands_for.get(name, name if name in candidate_names else None)
        if match is not None:
            node = producers[name]
            pairs.append((name, match, node.name or name, node.op_type))
    return pairs


def localise(reference_onnx: Path, candidate_onnx: Path, inputs: np.ndarray, precision: str) -> Localisation:
    reference, candidate = ir.load(reference_onnx), ir.load(candidate_onnx)
    pairs = _pairs(reference, candidate)
    ref_session = reference_session(exposing(with_types(reference), [p[0] for p in pairs]))
    cand_session = reference_session(exposing(with_types(candidate), [p[1] for p in pairs]))
    input_name = ref_session.get_inputs()[0].name
    sums = np.zeros((len(pairs), 4))  # Σd², Σr², max|d|, max|r|
    for start in range(0, len(inputs), BATCH):
        feed = {input_name: inputs[start:start + BATCH]}
        ref_out, cand_out = run_session(ref_session, feed), run_session(cand_session, feed)
        for index, (ref_name, cand_name, _, _) in enumerate(pairs):
            r = ref_out[ref_name].astype(np.float64)
            d = cand_out[cand_name].astype(np.float64) - r
            sums[index] += [np.sum(d * d), np.sum(r * r), 0, 0]
            sums[index, 2:] = np.maximum(sums[index, 2:], [np.abs(d).max(initial=0), np.abs(r).max(initial=0)])
    layers = [LayerError(ref_name, node, op, cand_name, float(np.sqrt(s[0] / s[1])) if s[1] else float(np.sqrt(s[0])),
                         float(s[2] / s[3]) if s[3] else float(s[2]))
              for (ref_name, cand_name, node, op), s in zip(pairs, sums, strict=True)]
    bound = TOLERANCES.get(precision, TOLERANCES["fp32"]).layer_rel_l2
    first = next((layer for layer in layers if not layer.rel_l2 <= bound), None)
    growth, worst_before = [], 0.0
    for layer in layers:
        growth.append(layer.rel_l2 - worst_before)
        worst_before = max(worst_before, layer.rel_l2)
    largest = layers[int(np.argmax(growth))] if layers else None
    significant = largest is not None and largest.rel_l2 >= JUMP_FRACTION * bound
    return Localisation(layers, bound, first, largest if significant else None)
