"""The one comparison: how far a candidate's outputs are from the reference's, and whether that is within a
tolerance (runtime/bundle/tolerances.py). Every check calls `compare` — export, optimize (and its per-pass
verification), quantize, build, verify, the self-check on open, the kernel check and parity.

Over every element of every output (N samples): max |d| and max |d| / max |r| (d = candidate − reference),
relative L2 ‖d‖ / ‖r‖, cosine similarity of the flattened outputs (1 for two zero vectors); for class scores
(N × classes) also top-1 agreement and top-5 overlap (|top5(c) ∩ top5(r)| / 5, averaged), and with labels the top-1
and top-5 accuracy of each (runtime/bundle/accuracy.py: with the 95% interval of top-1), whose ratio the tolerance
may bound.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from onebyone.runtime.bundle.accuracy import Accuracy, mean_iou, score, top_k, wilson_interval
from onebyone.runtime.bundle.golden import Golden, Run
from onebyone.runtime.bundle.tolerances import Tolerance
from onebyone.runtime.core.errors import UserError


def _decided_per_pixel(pixel_agreement: float | None, tolerance: Tolerance) -> bool:
    """Per-pixel class scores held to a decision bound (parity's rows, not a golden check): their largest single
    difference, over millions of logits, is an extreme-value statistic that grows with the data, so the pixels'
    argmax agreement, mIoU, rel-L2 and cosine judge them, and max|d| is reported only."""
    return pixel_agreement is not None and tolerance.min_top1 is not None


@dataclasses.dataclass(frozen=True)
class OutputMetrics:
    """One output's elementwise closeness (and, for per-pixel class scores, argmax agreement per pixel)."""

    max_abs: float
    max_rel: float
    rel_l2: float
    cosine: float
    pixel_agreement: float | None = None

    def failures(self, tolerance: Tolerance, name: str | None = None, pixels: bool = True) -> list[str]:
        """What is out of tolerance, each prefixed with the output's `name` when given; `pixels`: also bound the
        pixel argmax agreement."""
        prefix = f"{name}: " if name else ""
        found = []
        if self.max_rel > tolerance.max_rel and not _decided_per_pixel(self.pixel_agreement, tolerance):
            found.append(f"{prefix}max|diff|/max|ref| {self.max_rel:.3g} > {tolerance.max_rel:g}")
        if tolerance.max_rel_l2 is not None and self.rel_l2 > tolerance.max_rel_l2:
            found.append(f"{prefix}rel-L2 {self.rel_l2:.3g} > {tolerance.max_rel_l2:g}")
        if tolerance.min_cosine is not None and self.cosine < tolerance.min_cosine:
            found.append(f"{prefix}cosine {self.cosine:.6f} < {tolerance.min_cosine:g}")
        if (pixels and tolerance.min_top1 is not None and self.pixel_agreement is not None
                and self.pixel_agreement < tolerance.min_top1):
            found.append(f"{prefix}pixel argmax agreement {self.pixel_agreement:.2%} < {tolerance.min_top1:.0%}")
        return found


def _closeness(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, float, float, float]:
    """(max|d|, max|r|, max|d|/max|r|, ‖d‖/‖r‖, cosine) of two arrays, flattened; NaN/Inf make the differences
    infinite; two zero vectors have cosine 1, a zero beside a non-zero one 0."""
    ref, got = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
    finite = bool(np.isfinite(got).all())
    diff = got - ref
    max_abs = float(np.abs(diff).max(initial=0.0)) if finite else float("inf")
    max_ref = float(np.abs(ref).max(initial=0.0))
    norm_ref, norm_got = float(np.linalg.norm(ref)), float(np.linalg.norm(got)) if finite else 0.0
    if finite and norm_ref and norm_got:
        cosine = float(ref @ got / (norm_ref * norm_got))
    else:
        cosine = 1.0 if finite and not norm_ref and not norm_got else 0.0
    rel_l2 = float(np.linalg.norm(diff)) / (norm_ref or 1.0) if finite else float("inf")
    return max_abs, max_ref, max_abs / (max_ref or 1.0), rel_l2, cosine


def _pixel_agreement(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """Share of pixels whose argmax over classes (axis 1 of N × classes × H × W) is the same."""
    if reference.ndim != 4 or reference.shape[1] < 2 or not np.isfinite(candidate).all():
        return None
    return float(np.mean(reference.argmax(1) == candidate.argmax(1)))


def _output_metrics(reference: np.ndarray, candidate: np.ndarray, dense: bool) -> OutputMetrics:
    max_abs, _, max_rel, rel_l2, cosine = _closeness(reference, candidate)
    return OutputMetrics(max_abs, max_rel, rel_l2, cosine, _pixel_agreement(reference, candidate) if dense else None)


@dataclasses.dataclass(frozen=True)
class Metrics:
    max_abs: float
    max_abs_reference: float
    max_rel: float
    rel_l2: float
    cosine: float
    top1_agreement: float | None
    top5_overlap: float | None
    accuracy_reference: float | None  # top-1 against the labels, when there are labels
    accuracy_candidate: float | None
    top5_reference: float | None = None  # top-5 against the labels
    top5_candidate: float | None = None
    labelled_samples: int | None = None  # how many labelled samples the accuracies count (their interval's n)
    # per output (NAME@SHAPE for an output at another input size), each held to the same elementwise bounds
    outputs: dict[str, OutputMetrics] = dataclasses.field(default_factory=dict)
    pixel_agreement: float | None = None  # segmentation: per-pixel argmax agreement of the first output
    miou_reference: float | None = None  # segmentation with per-pixel labels: mIoU of each
    miou_candidate: float | None = None

    def failures(self, tolerance: Tolerance) -> list[str]:
        """What is out of tolerance, in words (empty: pass)."""
        found = []
        if not np.isfinite(self.max_abs):
            found.append("non-finite outputs")
        several = len(self.outputs) > 1  # then each output's pixel agreement is bounded with its other numbers
        pooled = OutputMetrics(self.max_abs, self.max_rel, self.rel_l2, self.cosine, self.pixel_agreement)
        found += pooled.failures(tolerance, pixels=not several)
        if (tolerance.min_top1 is not None and self.top1_agreement is not None
                and self.top1_agreement < tolerance.min_top1):
            found.append(f"top-1 agreement {self.top1_agreement:.2%} < {tolerance.min_top1:.0%}")
        if several:
            for name, metrics in self.outputs.items():
                found += metrics.failures(tolerance, name)
        if (tolerance.max_miou_drop is not None and self.miou_reference is not None
                and self.miou_candidate is not None
                and self.miou_reference - self.miou_candidate > tolerance.max_miou_drop):
            found.append(f"mIoU {self.miou_candidate:.2%} more than {tolerance.max_miou_drop:.0%} below the "
                         f"reference's {self.miou_reference:.2%}")
        share = tolerance.min_accuracy_share
        if (share is not None and self.accuracy_candidate is not None and self.accuracy_reference
                and self.labelled_samples and self.top1_agreement is not None):
            n = self.labelled_samples
            shortfall = (share * self.accuracy_reference - self.accuracy_candidate) * n  # images
            changed = (1 - self.top1_agreement) * n  # images whose top-1 moved: the paired difference's noise
            if shortfall > 2 * math.sqrt(max(changed, 1)):
                found.append(f"top-1 accuracy {self.accuracy_candidate:.2%} < {share:.1%} of the reference's "
                             f"{self.accuracy_reference:.2%} by {shortfall:.0f} of {n} images, more than chance "
                             f"allows (2√{changed:.0f})")
        return found

    def accuracies(self) -> tuple[Accuracy, Accuracy] | None:
        """(reference, candidate) accuracy against the labels, with their intervals; None without labels."""
        if self.labelled_samples is None:
            return None
        n = self.labelled_samples
        return tuple(Accuracy(samples=n, top1=top1, top5=top5, top1_interval=wilson_interval(round(top1 * n), n),
                              top1_agreement=agreement)
                     for top1, top5, agreement in ((self.accuracy_reference, self.top5_reference, None),
                                                   (self.accuracy_candidate, self.top5_candidate,
                                                    self.top1_agreement)))

    def as_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray],
            labels: np.ndarray | None = None, dense: bool = False) -> Metrics:
    """Metrics over all outputs, matched by name (shapes must be equal), and per output; class-score metrics from
    the first output when it is N × classes; `dense` (segmentation: N × classes × H × W scores): per-pixel argmax
    agreement, and mIoU of each against per-pixel `labels`. NaN/Inf in the candidate make the differences
    infinite."""
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise UserError(f"candidate has no output(s) {missing}; its outputs are {sorted(candidate)}")
    for name, ref in reference.items():
        if candidate[name].shape != ref.shape:
            raise UserError(f"output {name!r} has shape {candidate[name].shape}, the reference has {ref.shape}")
    max_abs, max_ref, max_rel, rel_l2, cosine = _closeness(
        np.concatenate([reference[k].ravel() for k in reference]),
        np.concatenate([candidate[k].ravel() for k in reference]))
    finite = np.isfinite(max_abs)
    outputs = {name: _output_metrics(ref, candidate[name], dense) for name, ref in reference.items()}
    first = next(iter(reference))
    scores_ref, scores_got = reference[first], candidate[first]
    top1 = top5 = labelled = None
    if scores_ref.ndim == 2 and scores_ref.shape[1] > 1 and finite:
        top1 = float(np.mean(scores_ref.argmax(1) == scores_got.argmax(1)))
        k = min(5, scores_ref.shape[1])
        top5 = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(top_k(scores_ref, k), top_k(scores_got, k),
                                                                          strict=True)]))
        if labels is not None:
            labelled = score(scores_ref, labels), score(scores_got, labels)
    mious = None
    if dense and labels is not None and labels.ndim == 3 and finite and scores_ref.ndim == 4:
        mious = mean_iou(scores_ref, labels), mean_iou(scores_got, labels)
    return Metrics(max_abs=max_abs, max_abs_reference=max_ref, max_rel=max_rel, rel_l2=rel_l2,
                   cosine=cosine, top1_agreement=top1, top5_overlap=top5,
                   accuracy_reference=labelled[0].top1 if labelled else None,
                   accuracy_candidate=labelled[1].top1 if labelled else None,
                   top5_reference=labelled[0].top5 if labelled else None,
                   top5_candidate=labelled[1].top5 if labelled else None,
                   labelled_samples=len(labels) if labelled else None, outputs=outputs,
                   pixel_agreement=outputs[first].pixel_agreement,
                   miou_reference=mious[0] if mious else None, miou_candidate=mious[1] if mious else None)


@dataclasses.dataclass(frozen=True)
class Parity:
    """A candidate's outputs measured against the reference's, and the tolerance they were held to."""

    metrics: Metrics
    tolerance: Tolerance

    @property
    def max_abs_diff(self) -> float:
        return self.metrics.max_abs

    @property
    def max_abs_ref(self) -> float:
        return self.metrics.max_abs_reference

    @property
    def relative(self) -> float:
        """max|d| / max|r| (max|d| when the reference is all zeros)."""
        return self.metrics.max_rel

    @property
    def failures(self) -> list[str]:
        return self.metrics.failures(self.tolerance)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_record(self) -> dict[str, float | bool]:
        """The manifest's `parity` record (same fields since the first bundle format)."""
        return {"max_abs_diff": self.max_abs_diff, "max_abs_ref": self.max_abs_ref, "relative": self.relative,
                "ok": self.ok}

    def describe(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        text = (f"{verdict}  max|diff| {self.metrics.max_abs:.3g} = {self.metrics.max_rel:.2e} x max|ref| "
                f"(tolerance {self.tolerance.max_rel:g})")
        beyond = [f for f in self.failures if not f.startswith("max|diff|")]
        return text + (": " + "; ".join(beyond) if beyond else "")


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], tolerance: Tolerance,
            labels: np.ndarray | None = None, dense: bool = False) -> Parity:
    """The candidate's outputs against the reference's, held to `tolerance` (`dense`: see `measure`)."""
    return Parity(measure(reference, candidate, labels, dense), tolerance)


def check_golden(golden: Golden, run: Run, tolerance: Tolerance) -> Parity:
    """An artifact's outputs (`run` on the golden inputs of every shape) against the golden torch outputs: a
    handful of samples, so the elementwise bound only (`Tolerance.golden`)."""
    return compare(golden.reference(), golden.run(run), tolerance.golden())
