"""A model's bundle directory and its `manifest.json`: what each file is, how it was made, and what it must meet.

Later stages read the manifest instead of re-deriving facts (input name and shape, preprocessing, tolerances).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from onebyone.runtime.bundle.tolerances import Tolerance
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write, sha256_file

PRECISION_KEY = "onebyone.precision"  # ONNX metadata: a precision that is an engine's setting (bf16), not the graph's
MANIFEST_NAME = "manifest.json"
GOLDEN_NAME = "golden.npz"
BUNDLE_FORMAT = "onebyone.bundle/1"
RANDOM_GOLDEN = "N(0,1)"  # how the golden record's `source` begins when export generated the inputs


@dataclasses.dataclass
class ModelInfo:
    """The network a bundle was made from, and how to feed it."""

    name: str
    source: str  # "zoo:resnet50" or "package.module:factory"
    weights: dict[str, str] | None  # {"path": ..., "sha256": ...}; None for the zoo's own weights/initialization
    input_name: str
    output_names: list[str]
    input_shape: list[int]  # C, H, W
    batch: int | None  # None: dynamic batch
    preprocess: dict[str, Any] | None
    task: str  # "classification", "segmentation" or "features"
    labels: list[str] | None = None  # class names in class order (runtime/bundle/labels.py)
    # every graph input and output: {"name", "dtype", "shape"} with -1 for a dynamic dimension
    inputs: list[dict[str, Any]] | None = None
    outputs: list[dict[str, Any]] | None = None
    checked_shapes: list[list[int]] | None = None  # the input shapes the export was checked at against torch


@dataclasses.dataclass
class ArtifactRecord:
    """One file of the bundle (the manifest keys records by file name)."""

    kind: str  # "onnx", "golden", ...
    sha256: str
    bytes: int
    made_by: dict[str, Any]  # stage, options, tool versions
    precision: str | None = None
    tolerance: Tolerance | None = None
    parity: dict[str, Any] | None = None  # last measured parity against the golden reference
    # INT8 files: the kernel check per CPU class and engine, {cpu class: {engine: KernelCheck.as_record()}}
    # (runtime/sessions/engine_checks.py); `auto` opens the file only on an engine that passed it on this class
    kernel_checks: dict[str, dict[str, dict[str, Any]]] | None = None
    auto_engine: dict[str, str] | None = None  # INT8 files: the engine `auto` chose from those checks, per CPU class
    # the golden samples this file is judged on when they are not the bundle's golden.npz: quantize's held-out real
    # samples, for a bundle whose golden inputs are random (optimize/precision/held_out.py)
    golden: str | None = None
    # files made for TensorRT: the releases whose parser rules it passed when written, and its warnings per release
    # (runtime/preflight/lint.py), {"versions": [...], "warnings": {version: count}}
    tensorrt_lint: dict[str, Any] | None = None
    created: str = dataclasses.field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat())

    def kernel_check_passed(self, cpu_class: str, engine: str) -> bool | None:
        """Whether `engine` passed the kernel check on `cpu_class` with the margin `auto` asks for (None: never
        checked there); a record written before the margin counts its plain verdict."""
        checked = (self.kernel_checks or {}).get(cpu_class, {}).get(engine)
        return None if checked is None else bool(checked.get("with_margin", checked["ok"]))

    @classmethod
    def for_file(cls, path: Path, **fields: Any) -> ArtifactRecord:
        """Describe `path` (hash and size measured here) with the given fields."""
        return cls(sha256=sha256_file(path), bytes=path.stat().st_size, **fields)


@dataclasses.dataclass
class Manifest:
    """The contents of `manifest.json`."""

    model: ModelInfo
    artifacts: dict[str, ArtifactRecord]
    format: str = BUNDLE_FORMAT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def golden_of(self, name: str | None) -> str:
        """The file of golden samples artifact `name` is judged on: its own, else the bundle's golden.npz."""
        record = self.artifacts.get(name) if name is not None else None
        return record.golden if record is not None and record.golden else GOLDEN_NAME

    def golden_is_random(self) -> bool:
        """Whether the bundle's golden inputs are generated noise rather than data (export without --data)."""
        record = self.artifacts.get(GOLDEN_NAME)
        return record is not None and str(record.made_by.get("source", "")).startswith(RANDOM_GOLDEN)

    def primary_onnx(self) -> str | None:
        """The bundle's own model: the first ONNX artifact recorded (the export's model.onnx)."""
        return next((name for name, record in self.artifacts.items() if record.kind == "onnx"), None)

    @classmethod
    def from_json(cls, text: str, origin: Path) -> Manifest:
        try:
            raw = json.loads(text)
            if raw.get("format") != BUNDLE_FORMAT:
                raise ValueError(f"format is {raw.get('format')!r}, expected {BUNDLE_FORMAT!r}")
            artifacts = {}
            for name, record in raw["artifacts"].items():
                tolerance = record.pop("tolerance", None)
                artifacts[name] = ArtifactRecord(**record,
                                                 tolerance=Tolerance.from_record(tolerance) if tolerance else None)
            return cls(model=ModelInfo(**raw["model"]), artifacts=artifacts)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise UserError(f"{origin} is not a valid onebyone manifest ({err}); re-run `onebyone export`") from None


def manifest_path(bundle_dir: Path) -> Path:
    return bundle_dir / MANIFEST_NAME


def read_manifest(bundle_dir: Path) -> Manifest:
    """Load a bundle's manifest, or raise a UserError naming the fix."""
    path = manifest_path(bundle_dir)
    if not path.is_file():
        raise UserError(f"{bundle_dir} is not a onebyone bundle (no {MANIFEST_NAME}); "
                        "create one with `onebyone export`")
    return Manifest.from_json(path.read_text(), path)


def write_manifest(bundle_dir: Path, manifest: Manifest) -> None:
    """Write the manifest atomically (readers never see a partial file)."""
    with atomic_write(manifest_path(bundle_dir)) as tmp:
        tmp.write_text(manifest.to_json())
