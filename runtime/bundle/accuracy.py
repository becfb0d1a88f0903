"""Accuracy against labels, with the interval the sample size allows: top-1 and top-5 of class scores, the 95% Wilson
score interval of top-1, and — given a reference's scores — top-1 agreement with that reference."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from onebyone.runtime.core.errors import UserError

Z95 = 1.959963984540054  # the two-sided 95% normal quantile


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row of class scores (N × classes), the indices of the k highest, best first; ties keep class order."""
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def wilson_interval(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (it stays inside [0, 1] and is sound near 0 and 1, where
    top-1 on small evaluation sets sits)."""
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclasses.dataclass(frozen=True)
class Accuracy:
    samples: int
    top1: float
    top5: float
    top1_interval: tuple[float, float]
    top1_agreement: float | None  # with the reference's top-1, when a reference was given

    def as_record(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"top1_interval": list(self.top1_interval)}

    def describe(self) -> str:
        low, high = self.top1_interval
        return f"top-1 {self.top1:.2%} (95% {low:.1%}–{high:.1%}, {self.samples} images)  top-5 {self.top5:.2%}"


def score(logits: np.ndarray, labels: np.ndarray, reference: np.ndarray | None = None) -> Accuracy:
    """Top-1/top-5 of class scores (N × classes) against `labels` (N,), and agreement with `reference` scores."""
    if logits.ndim != 2 or logits.shape[0] != len(labels):
        raise UserError(f"{logits.shape[0] if logits.ndim else 0} predictions of shape {logits.shape} for "
                        f"{len(labels)} labels: accuracy needs class scores N × classes")
    predicted = logits.argmax(axis=1)
    correct = int(np.sum(predicted == labels))
    k = min(5, logits.shape[1])
    top5 = float(np.mean(np.any(top_k(logits, k) == labels[:, None], axis=1)))
    agreement = float(np.mean(predicted == reference.argmax(axis=1))) if reference is not None else None
    return Accuracy(samples=len(labels), top1=correct / len(labels), top5=top5,
                    top1_interval=wilson_interval(correct, len(labels)), top1_agreement=agreement)


def mean_iou(scores: np.ndarray, masks: np.ndarray) -> float:
    """Mean intersection over union of per-pixel class scores (N × classes × H × W) against masks (N × H × W):
    IoU_c = |pred = c ∧ mask = c| / |pred = c ∨ mask = c| over every pixel of every sample, averaged over the classes
    that occur in the masks or the predictions (the PASCAL VOC convention)."""
    if scores.ndim != 4 or scores.shape[:1] + scores.shape[2:] != masks.shape:
        raise UserError(f"scores of shape {list(scores.shape)} for masks of shape {list(masks.shape)}: mIoU needs "
                        "N × classes × H × W scores and N × H × W masks")
    predicted = scores.argmax(axis=1).ravel()
    truth = masks.ravel()
    classes = scores.shape[1]
    confusion = np.bincount(truth * classes + predicted, minlength=classes * classes).reshape(classes, classes)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present])) if present.any() else 1.0
