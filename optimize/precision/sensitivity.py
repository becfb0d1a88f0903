"""Which layers INT8 hurts: each weighted layer quantized alone (every other node left float), ranked by the output
error it causes on sample data; and the fallback that keeps the most sensitive layers in float until an accuracy
budget holds.

Error of a layer: relative L2 ‖y_q − y‖ / ‖y‖ of the model outputs when only that layer (its input Q/DQ and its
weights) is quantized. Accuracy drop, in percentage points: with labels, accuracy(float) − accuracy(quantized);
without, the share of samples whose top-1 class changes (100 − top-1 agreement).
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
              weight_range: str | None = None) -> ir.Model:
    """A quantized copy of `model` (the original is untouched)."""
    copy = ir.from_proto(ir.to_proto(model))
    insert_qdq(copy, ranges, flavour, exclude, weight_range)
    return copy


def run(model: ir.Model, inputs: np.ndarray) -> np.ndarray:
    """The first output of `model` on `inputs`, in batches (ORT, all optimizations off)."""
    session = reference_session(ir.to_proto(model).SerializeToString())
    name = session.get_inputs()[0].name
    return next(iter(run_in_batches(session, name, inputs).values()))


def drop_points(reference: np.ndarray, outputs: np.ndarray, labels: np.ndarray | None) -> float:
    if labels is not None:
        return 100.0 * float(np.mean(reference.argmax(1) == labels) - np.mean(outputs.argmax(1) == labels))
    return 100.0 * float(np.mean(reference.argmax(1) != outputs.argmax(1)))


def rank_layers(model: ir.Model, ranges: dict[str, TensorRange], flavour: str, inputs: np.ndarray,
                reference: np.ndarray | None = None, weight_range: str | None = None) -> list[tuple[str, float]]:
    """(layer, output rel-L2 when quantized alone), most sensitive first."""
    reference = run(model, inputs) if reference is None else reference
    everything = {node.name for node in model.graph}
    scores = []
    layers = weighted_layers(model)
    with progress() as bar:
        task = bar.add_task(f"sensitivity of {len(layers)} layers", total=len(layers))
        for layer in layers:
            outputs = run(quantized(model, ranges, flavour, everything - {layer}, weight_range), inputs)
            scores.append((layer, float(np.linalg.norm(outputs - reference) / np.linalg.norm(reference))))
            bar.advance(task)
    return sorted(scores, key=lambda item: -item[1])


def fall_back(model: ir.Model, ranges: dict[str, TensorRange], flavour: str, exclude: set[str], inputs: np.ndarray,
              labels: np.ndarray | None, stop: Callable[[int, float], bool], always_rank: bool = False,
              weight_range: str | None = None) -> Fallback:
    """Exclude layers in order of sensitivity until `stop(count, drop)` is true (or every layer is float). The
    ranking is skipped when nothing needs excluding, unless `always_rank`."""
    reference = run(model, inputs)

    def drop(excluded: set[str]) -> float:
        return drop_points(reference, run(quantized(model, ranges, flavour, excluded, weight_range), inputs), labels)

    metric = "accuracy on the labels (points)" if labels is not None else "top-1 changes vs float (points)"
    before = drop(exclude)
    if stop(0, before) and not always_rank:
        return Fallback([], before, before, metric, [])
    ranking = rank_layers(model, ranges, flavour, inputs, reference, weight_range)
    chosen: list[str] = []
    after = before
    for layer, _ in ranking:
        if stop(len(chosen), after):
            break
        if layer in exclude:
            continue
        chosen.append(layer)
        after = drop(exclude | set(chosen))
    return Fallback(chosen, before, after, metric, ranking)
