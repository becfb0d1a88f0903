"""Publishing a derived ONNX file: atomically, checked against the bundle's golden outputs, recorded in the manifest."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import onnx_ir as ir
from rich.console import Console

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, ArtifactRecord, manifest_path, read_manifest, write_manifest
from onebyone.runtime.bundle.onnx_file import save_model
from onebyone.runtime.bundle.tolerances import Tolerance
from onebyone.runtime.core.errors import CheckFailed
from onebyone.runtime.core.files import publish, staging_dir
from onebyone.runtime.parity.check import Engine, check_artifact
from onebyone.runtime.preflight.lint import Lint, lint_model

stdout = Console(highlight=False, soft_wrap=True)


@dataclasses.dataclass(frozen=True)
class Companion:
    """A file made with the model (calibration table, cache) that is published and recorded with it."""

    staged: Path
    kind: str


def write_artifact(model: ir.Model, source: Path, output: Path, precision: str, tolerance: Tolerance,
                   made_by: dict[str, Any], companions: list[Companion] = (), engine: Engine | None = None,
                   golden: Companion | None = None, consumers: tuple[Engine, ...] = (),
                   tensorrt: tuple[str, ...] = ()) -> str:
    """Save `output` (and its companions beside it). When `source` is a bundle artifact and `output` sits beside
    it, check the result against the bundle's golden outputs first — or against `golden`, its own golden samples
    (quantize's held-out real samples), published and recorded with it — publishing nothing if it fails, and record
    everything in the manifest. `engine`: what runs the check when it is not ONNX Runtime's reference session (a
    bf16 artifact: OpenVINO); `consumers`: stock configurations beyond ONNX Runtime's to check it in; `tensorrt`:
    the TensorRT releases whose parser rules it must pass (runtime/preflight/lint.py), first of all. Returns the
    line to show the user; raises CheckFailed when a check fails."""
    lint = _linted(model, output, tensorrt)
    bundle = source.parent
    in_bundle = manifest_path(bundle).is_file() and output.parent.resolve() == bundle.resolve()
    manifest = read_manifest(bundle) if in_bundle else None
    if manifest is not None and source.name not in manifest.artifacts:
        manifest = None
    with staging_dir(output.parent) as stage:
        staged = stage / output.name
        written = save_model(model, staged, made_by["stage"])
        if manifest is None:
            for path in [*(c.staged for c in companions), *written]:
                publish(path, output.parent / path.name)
            return f"{output}  written (not in a bundle: no golden check){_accepted_by(lint)}"
        labelled = LabelledSet.of_bundle(bundle, manifest)
        companions = [*companions, *([golden] if golden is not None else [])]
        golden_file = golden.staged if golden is not None else bundle / manifest.golden_of(source.name)
        check = check_artifact(staged, Golden.load(golden_file), tolerance, labelled, engine, consumers)
        if not check.ok:
            raise CheckFailed(f"{output} fails its golden check{_on(golden)}: {check.describe()}; nothing was "
                              "written")
        manifest.artifacts[output.name] = ArtifactRecord.for_file(
            staged, kind="onnx", precision=precision, tolerance=tolerance, parity=check.as_record(), made_by=made_by,
            golden=golden_file.name if golden_file.name != GOLDEN_NAME else None,
            tensorrt_lint=_lint_record(lint))
        for data_file in written[:-1]:
            manifest.artifacts[data_file.name] = ArtifactRecord.for_file(
                data_file, kind="onnx-external-data", made_by={"stage": made_by["stage"], "belongs_to": output.name})
        for companion in companions:
            manifest.artifacts[companion.staged.name] = ArtifactRecord.for_file(
                companion.staged, kind=companion.kind, made_by={"stage": made_by["stage"], "belongs_to": output.name})
        for path in [*(c.staged for c in companions), *written]:
            publish(path, bundle / path.name)
        write_manifest(bundle, manifest)
    reference = "torch" if golden is None else f"{source.name} on held-out samples"
    return (f"{output}  {precision}  {'ORT' if engine is None else engine.name} vs {reference}: {check.describe()}"
            + _accepted_by(lint))


def _linted(model: ir.Model, output: Path, versions: tuple[str, ...]) -> Lint | None:
    """The lint of a file made for TensorRT; CheckFailed, naming each rule, when a release would refuse it."""
    if not versions:
        return None
    lint = lint_model(model, versions, output.name)
    refusals = lint.refusals()
    if refusals:
        more = f"; and {len(refusals) - 5} more" if len(refusals) > 5 else ""
        raise CheckFailed(f"{output} would be refused by TensorRT's ONNX parser, so nothing was written: "
                          + "; ".join(refusals[:5]) + more + " (`onebyone lint` on the source lists every rule)")
    return lint


def _accepted_by(lint: Lint | None) -> str:
    return "" if lint is None else f"; TensorRT {' and '.join(lint.versions)} parser rules: accepted"


def _lint_record(lint: Lint | None) -> dict[str, Any] | None:
    return None if lint is None else {"versions": lint.versions,
                                      "warnings": {v.tensorrt: len(v.warnings) for v in lint.verdicts}}


def _on(golden: Companion | None) -> str:
    return f" on its held-out real samples ({golden.staged.name}, reference: the FP32 file)" if golden else ""
