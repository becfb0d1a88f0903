"""What `onebyone.open` was pointed at (a Target: the file or torch model, and the bundle record it can be checked
against) and what is known about the model behind it (a ModelDescription: preprocessing, task, precision, labels).
Plain records: runtime/sessions/locate.py resolves a Target, the backends describe their models with these."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from onebyone.runtime.bundle.manifest import PRECISION_KEY, ArtifactRecord, Manifest
from onebyone.runtime.bundle.preprocess import Preprocess


@dataclasses.dataclass(frozen=True)
class ModelDescription:
    """How to feed a model and read its outputs."""

    name: str
    task: str  # "classification", "features" or "unknown"
    preprocess: Preprocess | None
    precision: str | None  # fp32 / fp16 / int8 where known
    labels: tuple[str, ...] | None = None  # class names in class order, where the model has them


@dataclasses.dataclass(frozen=True)
class Target:
    """A resolved `open` target. `kind` is its format: "onnx", "plan", "torch" or a registered engine's own
    (runtime/sessions/engines.py)."""

    kind: str
    path: Path | None  # the file (onnx/plan); None for torch
    model: str | None  # torch: zoo name or package.module:factory
    weights: Path | None  # torch: state_dict to load
    bundle: Path | None  # the bundle the artifact belongs to, when its manifest lists it
    manifest: Manifest | None
    record_name: str | None  # the artifact's file name in the manifest

    @property
    def record(self) -> ArtifactRecord | None:
        if self.manifest is None or self.record_name is None:
            return None
        return self.manifest.artifacts.get(self.record_name)

    @classmethod
    def file(cls, kind: str, path: Path) -> Target:
        """A file outside any bundle."""
        return cls(kind, path, None, None, None, None, None)

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else f"{self.model} (torch)"


def describe_from_manifest(manifest: Manifest, record: ArtifactRecord | None) -> ModelDescription:
    model = manifest.model
    return ModelDescription(name=model.name, task=model.task,
                            preprocess=Preprocess.from_dict(model.preprocess) if model.preprocess else None,
                            precision=record.precision if record is not None else "fp32",
                            labels=tuple(model.labels) if model.labels is not None else None)


def describe_from_metadata(name: str, metadata: dict[str, str], precision: str | None) -> ModelDescription:
    """From the `onebyone.*` metadata `export` writes into the ONNX file (and `build` copies into plan.json)."""
    preprocess, labels = None, None
    if "onebyone.preprocess" in metadata:
        try:
            preprocess = Preprocess.from_dict(json.loads(metadata["onebyone.preprocess"]))
        except (ValueError, KeyError, TypeError):
            preprocess = None
    if "onebyone.labels" in metadata:
        try:
            found = json.loads(metadata["onebyone.labels"])
            labels = tuple(found) if isinstance(found, list) and all(isinstance(v, str) for v in found) else None
        except ValueError:
            labels = None
    return ModelDescription(name=metadata.get("onebyone.model", name), task=metadata.get("onebyone.task", "unknown"),
                            preprocess=preprocess, precision=precision or metadata.get(PRECISION_KEY), labels=labels)
