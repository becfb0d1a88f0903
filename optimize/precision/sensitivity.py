"""Which layers INT8 hurts: each weighted layer quantized alone (every other node left float), ranked by the output
error it causes on sample data; and the fallback that keeps the most sensitive layers in float until an accuracy
budget holds.

Error of a layer: relative L2 ‖y_q − y‖ / ‖y‖ of the model outputs when only that layer (its input Q/DQ and its
weights) is quantized, for the output it moves most. Accuracy drop, in percentage points: the share of decisions
that change — samples whose top-1 class changes (100 − top-1 agreement), or for per-pixel scores (segmentation) the
pixels whose argmax class changes — labels or not, for the output whose decisions change most (every output is held
to the budget, not the first alone). It bounds the drop in labelled accuracy from above, and it is the sharper
measure on a small calibration set, where quantization can change answers without changing the labelled score
(docs/parity.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import onnx_ir as ir

from onebyone.optimize.precision.qdq import WEIGHTED, TensorRange, insert_qdq
from onebyone.runtime.bundle.golden import reference_session
from onebyone.runtime.core.progress import progress
from onebyone.runtime.parity.check import run_in_batches

METRIC = "top-1 (per-pixel argmax) changes vs float, worst output (points)"


@dataclasses.dataclass(frozen=True)
class Fallback:
    """What an accuracy budget (or a fixed count) decided."""

    excluded: list[str]  # layers kept in float, most sensitive first
    drop_before: float  # points, everything quantized
    drop_after: float  # points, with `excluded` in float
    metric: str
    ranking: list[tuple[str, float]]  # (layer, output rel-L2 when quantized alone), most sensitive first


def weighted_layers(model: ir.Model) -> list[str]:
    return [node.name for node in model.graph if node.op_type in WEIGHTED and node.domain == ""]


def quantized(model: ir.Model, ranges: dict[str, TensorRange], flavour: str, exclude: set[str],
              weight_range: str | None = None, input_means: dict[str, np.ndarray] | None = None) -> ir.Model:
    """A quantized copy of `model` (the original is untouched)."""
    copy = ir.from_proto(ir.to_proto(model))
    insert_qdq(copy, ranges, flavour, exclude, weight_range, input_means)
    return copy


def run(model: ir.Model, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of `model` on `inputs`, in batches (ORT, all optimizations off)."""
    session = reference_session(ir.to_proto(model).SerializeToString())
    return run_in_batches(session, session.get_inputs()[0].name, inputs)


def drop_points(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> float:
    """Decisions changed against the float model, in points, for the output that changes most: argmax over the
    class axis (1) per sample, or per pixel of N × classes × H × W scores — an upper bound on the accuracy lost,
    whatever the labels (each changed answer loses at most one right one)."""
    return max(100.0 * float(np.mean(reference[name].argmax(1) != outputs[name].argmax(1))) for name in reference)


def output_error(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> float:
    """‖y_q − y‖ / ‖y‖ of the output that moves most."""
    return max(float(np.linalg.norm(outputs[name] - ref) / np.linalg.norm(ref)) for name, ref in reference.items())


def rank_layers(model: ir.Model, ranges: dict[str, TensorRange], flavour: str, inputs: np.ndarray,
                reference: dict[str, np.ndarray] | None = None, weight_range: str | None = None,
                input_means: dict[str, np.ndarray] | None = None) -> list[tuple[str, float]]:
    """(layer, output rel-L2 when quantized alone), most sensitive first."""
    reference = run(model, inputs) if reference is None else reference
    everything = {node.name for node in model.graph}
    scores = []
    layers = weighted_layers(model)
    with progress() as bar:
        task = bar.add_task(f"sensitivity of {len(layers)} layers", total=len(layers))
        for layer in layers:
            outputs = run(quantized(model, ranges, flavour, everything - {layer}, weight_range, input_means), inputs)
            scores.append((layer, output_error(reference, outputs)))
            bar.advance(task)
    return sorted(scores, key=lambda item: -item[1])


def fall_back(model: ir.Model, ranges: dict[str, TensorRange], flavour: str, exclude: set[str], inputs: np.ndarray,
              stop: Callable[[int, float], bool], always_rank: bool = False, weight_range: str | None = None,
              input_means: dict[str, np.ndarray] | None = None) -> Fallback:
    """Keep the k most sensitive layers float for the least k with `stop(k, drop)` true (or every layer float). The
    ranking is skipped when nothing needs excluding, unless `always_rank`.

    k is found by doubling (1, 2, 4, …) to the first count that meets `stop`, then bisecting below it: about
    2·log₂(k) quantized models evaluated instead of k, on the assumption that the drop falls as layers go float
    (it does not always, one layer at a time; the bisection then returns a k that meets `stop`, not always the
    least)."""
    reference = run(model, inputs)

    def drop(excluded: set[str]) -> float:
        quantized_model = quantized(model, ranges, flavour, excluded, weight_range, input_means)
        return drop_points(reference, run(quantized_model, inputs))

    before = drop(exclude)
    if stop(0, before) and not always_rank:
        return Fallback([], before, before, METRIC, [])
    ranking = rank_layers(model, ranges, flavour, inputs, reference, weight_range, input_means)
    candidates = [layer for layer, _ in ranking if layer not in exclude]
    drops = {0: before}

    def meets(count: int) -> bool:
        if count not in drops:
            drops[count] = drop(exclude | set(candidates[:count]))
        return stop(count, drops[count])

    low, high = 0, 0  # meets(low) is false; meets(high) true once found
    if not meets(0):
        high = 1
        while high < len(candidates) and not meets(high):
            low, high = high, 2 * high
        high = min(high, len(candidates))
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if meets(middle) else (middle, high)
    if high not in drops:
        meets(high)
    return Fallback(candidates[:high], before, drops[high], METRIC, ranking)
