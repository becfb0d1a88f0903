"""What `onebyone.open` was pointed at: an ONNX file, a TensorRT plan, a bundle directory or a torch model, and what
is known about the model behind it (preprocessing, task, precision, the bundle record it can be checked against).

Nothing here imports torch, onnxruntime or TensorRT; a zoo name is only resolved (which imports torch) when the
target is not a path.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from onebyone.runtime.bundle.manifest import MANIFEST_NAME, PRECISION_KEY, ArtifactRecord, Manifest, read_manifest
from onebyone.runtime.bundle.preprocess import Preprocess
from onebyone.runtime.core.errors import UserError

ONNX_SUFFIXES = (".onnx",)
PLAN_SUFFIXES = (".plan", ".engine")
PLAN_KIND = "tensorrt-plan"


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
    """A resolved `open` target. `kind` is "onnx", "plan" or "torch"."""

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

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else f"{self.model} (torch)"


def _bundle_of(path: Path) -> tuple[Path | None, Manifest | None, str | None]:
    """The bundle a file belongs to: its directory, when that has a manifest listing the file."""
    if not (path.parent / MANIFEST_NAME).is_file():
        return None, None, None
    manifest = read_manifest(path.parent)
    if path.name not in manifest.artifacts:
        return None, None, None
    return path.parent, manifest, path.name


def _bundle_target(bundle: Path, backend: str) -> Target:
    manifest = read_manifest(bundle)
    if backend == "torch":
        return _torch_target_of_bundle(bundle, manifest)
    kind, record_kind = ("plan", PLAN_KIND) if backend == "tensorrt" else ("onnx", "onnx")
    names = [name for name, record in manifest.artifacts.items() if record.kind == record_kind]
    if not names:
        hint = "build one with `onebyone build`" if kind == "plan" else "re-run `onebyone export`"
        raise UserError(f"bundle {bundle} has no {record_kind} artifact; {hint}")
    return Target(kind=kind, path=bundle / names[0], model=None, weights=None, bundle=bundle, manifest=manifest,
                  record_name=names[0])


def _torch_target_of_bundle(bundle: Path, manifest: Manifest) -> Target:
    """The torch model a bundle was exported from, with the weights it recorded (refused if they changed since)."""
    from onebyone.runtime.core.files import sha256_file

    weights = None
    if manifest.model.weights is not None:
        weights = Path(manifest.model.weights["path"])
        if not weights.is_file() or sha256_file(weights) != manifest.model.weights["sha256"]:
            raise UserError(f"the weights {weights} this bundle was exported from are missing or changed since; "
                            "open the model by name with the right weights instead")
    return Target(kind="torch", path=None, model=manifest.model.source.removeprefix("zoo:"), weights=weights,
                  bundle=bundle, manifest=manifest, record_name=None)


def locate(target: str | Path, backend: str, weights: Path | None = None) -> Target:
    """Resolve what the user named. `backend` is "auto", "torch", "onnxruntime", "openvino" or "tensorrt"."""
    path = Path(target)
    if not path.exists():
        text = str(target)
        if backend in ("auto", "torch") and (":" in text or _is_zoo_name(text)):
            return Target(kind="torch", path=None, model=text.removeprefix("zoo:"), weights=weights, bundle=None,
                          manifest=None, record_name=None)
        raise UserError(f"{target} does not exist; open an .onnx file, a TensorRT .plan, a bundle directory, a zoo "
                        "model name or package.module:factory")
    if path.is_dir():
        return _bundle_target(path, backend)
    bundle, manifest, record_name = _bundle_of(path)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        if backend == "tensorrt":
            raise UserError(f"{path} is ONNX; build a TensorRT plan from it with `onebyone build {path}` and open "
                            "that, or use --backend onnxruntime (its TensorRT execution provider) or openvino")
        if backend == "torch":
            if manifest is None:
                raise UserError(f"{path} is not part of a bundle, so its torch model is unknown; open the model by "
                                "zoo name or package.module:factory")
            return _torch_target_of_bundle(path.parent, manifest)
        return Target("onnx", path, None, None, bundle, manifest, record_name)
    if suffix in PLAN_SUFFIXES:
        if backend not in ("auto", "tensorrt"):
            raise UserError(f"{path} is a TensorRT plan; it runs only with --backend tensorrt")
        return Target("plan", path, None, None, bundle, manifest, record_name)
    raise UserError(f"{path}: unknown artifact type {suffix or '(no suffix)'}; expected .onnx, .plan or a bundle "
                    "directory")


def _is_zoo_name(name: str) -> bool:
    from onebyone.export.zoo import ZOO

    return name.removeprefix("zoo:") in ZOO


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
