"""Labelled evaluation data carried in a bundle (`labelled.npz`), so any artifact's accuracy can be measured."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.accuracy import mean_iou
from onebyone.runtime.bundle.manifest import Manifest
from onebyone.runtime.core.errors import UserError

LABELLED_NAME = "labelled.npz"


@dataclasses.dataclass(frozen=True)
class LabelledSet:
    """Model-ready inputs (N, C, H, W) float32 with integer class labels (N,), and where they come from."""

    inputs: np.ndarray
    labels: np.ndarray
    description: str

    def save(self, path: Path) -> None:
        with path.open("wb") as stream:
            np.savez(stream, inputs=self.inputs, labels=self.labels, description=np.array(self.description))

    @classmethod
    def load(cls, path: Path) -> LabelledSet:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(inputs=data["inputs"], labels=data["labels"], description=str(data["description"]))
        except (OSError, ValueError, KeyError) as err:
            raise UserError(f"cannot read labelled data {path}: {err}; re-run `onebyone export`") from None

    @classmethod
    def of_bundle(cls, bundle_dir: Path, manifest: Manifest) -> LabelledSet | None:
        """The bundle's labelled data, when its manifest lists some."""
        return cls.load(bundle_dir / LABELLED_NAME) if LABELLED_NAME in manifest.artifacts else None

    @property
    def metric(self) -> str:
        """What `accuracy` measures: top-1 of class labels (N,), or mIoU of per-pixel masks (N, H, W)."""
        return "mIoU" if self.labels.ndim == 3 else "top-1"

    def accuracy(self, scores: np.ndarray) -> float:
        """Top-1 accuracy of class scores (N, classes) against class labels, or the mean IoU of per-pixel scores
        (N, classes, H, W) against masks."""
        if scores.shape[0] != len(self.labels):
            raise UserError(f"{scores.shape[0]} predictions for {len(self.labels)} labels")
        if self.labels.ndim == 3:
            return mean_iou(scores, self.labels)
        return float(np.mean(scores.argmax(axis=1) == self.labels))
