"""Resolving what `onebyone.open` was pointed at — an ONNX file, a TensorRT plan, a bundle directory, a torch model
or a registered engine's file — into a Target (runtime/sessions/target.py).

Nothing here imports torch, onnxruntime or TensorRT; a zoo name is only resolved (which imports torch) when the
target is not a path.
"""

from __future__ import annotations

from pathlib import Path

from onebyone.runtime.bundle.manifest import MANIFEST_NAME, Manifest, read_manifest
from onebyone.runtime.core.errors import UserError, option
from onebyone.runtime.sessions import engines
from onebyone.runtime.sessions.target import Target

PLAN_KIND = "tensorrt-plan"


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
    """Resolve what the user named. `backend` is "auto" or an engine's name; a file's format comes from its suffix
    (the engine registry)."""
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
    file_format = engines.format_of(suffix)
    if file_format == "onnx":
        if backend == "tensorrt":
            raise UserError(f"{path} is ONNX; build a TensorRT plan from it with `onebyone build {path}` and open "
                            f"that, or use {option('backend', 'onnxruntime')} (its TensorRT execution provider) or "
                            "openvino")
        if backend == "torch":
            if manifest is None:
                raise UserError(f"{path} is not part of a bundle, so its torch model is unknown; open the model by "
                                "zoo name or package.module:factory")
            return _torch_target_of_bundle(path.parent, manifest)
    if file_format is None:
        known = sorted({s for engine in engines.engines() for s in engine.suffixes})
        raise UserError(f"{path}: unknown artifact type {suffix or '(no suffix)'}; expected {', '.join(known)} or a "
                        "bundle directory")
    if backend != "auto" and engines.engine(backend).opens != file_format:
        runners = ", ".join(e.name for e in engines.opening(file_format))
        raise UserError(f"{path} is a {file_format} file; backend {backend} does not run it (use {runners} or auto)")
    return Target(file_format, path, None, None, bundle, manifest, record_name)


def _is_zoo_name(name: str) -> bool:
    from onebyone.export.zoo import ZOO

    return name.removeprefix("zoo:") in ZOO
