"""How far a candidate's outputs are from the reference's, and whether that is within its precision's bounds.

Over every element of every output (N samples): max |d| and max |d| / max |r| (d = candidate − reference),
relative L2 ‖d‖ / ‖r‖, cosine similarity of the flattened outputs; for class scores (N × classes) also top-1
agreement and top-5 overlap (|top5(c) ∩ top5(r)| / 5, averaged), and with labels the top-1 accuracy of each.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class Bounds:
    """A candidate passes when max_rel ≤ max_rel, rel_l2 ≤ max_rel_l2 (when set), cosine ≥ min_cosine and (class
    scores) top-1 agreement ≥ min_top1."""

    max_rel: float
    min_cosine: float
    min_top1: float
    max_rel_l2: float | None = None  # None: not bounded


# Defaults per precision (README, "Parity"): FP32 must be the same network to rounding; FP16 to half precision;
# INT8 may move logits but must keep the direction of the output vector and almost every decision.
# "int8-kernel" holds an engine to the same INT8 file's exact Q/DQ math (runtime/parity/kernel_check.py), not to torch:
# only rounding may differ (measured ≤ 0.019 rel-L2, docs/cpus.md); saturating int8 kernels reach 0.07–0.25. It
# bounds no decisions (top-1 near ties is parity's business against torch).
BOUNDS = {"fp32": Bounds(max_rel=1e-4, min_cosine=0.99999, min_top1=1.0),
          "fp16": Bounds(max_rel=1e-2, min_cosine=0.9999, min_top1=0.99),
          "int8": Bounds(max_rel=0.25, min_cosine=0.99, min_top1=0.95),
          "int8-kernel": Bounds(max_rel=0.1, min_cosine=0.999, min_top1=0.0, max_rel_l2=0.03)}


@dataclasses.dataclass(frozen=True)
class Metrics:
    max_abs: float
    max_rel: float
    rel_l2: float
    cosine: float
    top1_agreement: float | None
    top5_overlap: float | None
    accuracy_reference: float | None
    accuracy_candidate: float | None

    def failures(self, bounds: Bounds) -> list[str]:
        """What is out of bounds, in words (empty: pass)."""
        found = []
        if not np.isfinite(self.max_abs):
            found.append("non-finite outputs")
        if self.max_rel > bounds.max_rel:
            found.append(f"max|diff|/max|ref| {self.max_rel:.3g} > {bounds.max_rel:g}")
        if bounds.max_rel_l2 is not None and self.rel_l2 > bounds.max_rel_l2:
            found.append(f"rel-L2 {self.rel_l2:.3g} > {bounds.max_rel_l2:g}")
        if self.cosine < bounds.min_cosine:
            found.append(f"cosine {self.cosine:.6f} < {bounds.min_cosine:g}")
        if self.top1_agreement is not None and self.top1_agreement < bounds.min_top1:
            found.append(f"top-1 agreement {self.top1_agreement:.2%} < {bounds.min_top1:.0%}")
        return found

    def as_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def measure(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            labels: np.ndarray | None) -> Metrics:
    """Metrics over all outputs; class-score metrics from the first output when it is N × classes."""
    ref = np.concatenate([reference[k].astype(np.float64).ravel() for k in reference])
    got = np.concatenate([candidate[k].astype(np.float64).ravel() for k in reference])
    diff = got - ref
    finite = bool(np.isfinite(got).all())
    max_abs = float(np.abs(diff).max()) if finite else float("inf")
    scale = float(np.abs(ref).max()) or 1.0
    norm_ref, norm_got = float(np.linalg.norm(ref)), float(np.linalg.norm(got)) if finite else 0.0
    cosine = float(ref @ got / (norm_ref * norm_got)) if finite and norm_ref and norm_got else 0.0
    first = next(iter(reference))
    scores_ref, scores_got = reference[first], candidate[first]
    top1 = top5 = acc_ref = acc_got = None
    if scores_ref.ndim == 2 and scores_ref.shape[1] > 1 and finite:
        top1 = float(np.mean(scores_ref.argmax(1) == scores_got.argmax(1)))
        k = min(5, scores_ref.shape[1])
        top5 = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(_top_k(scores_ref, k), _top_k(scores_got, k),
                                                                          strict=True)]))
        if labels is not None:
            acc_ref = float(np.mean(scores_ref.argmax(1) == labels))
            acc_got = float(np.mean(scores_got.argmax(1) == labels))
    return Metrics(max_abs=max_abs, max_rel=max_abs / scale,
                   rel_l2=float(np.linalg.norm(diff)) / (norm_ref or 1.0) if finite else float("inf"),
                   cosine=cosine, top1_agreement=top1, top5_overlap=top5, accuracy_reference=acc_ref,
                   accuracy_candidate=acc_got)
