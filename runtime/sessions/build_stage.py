"""The build stage (`onebyone build`, `onebyone.stages.build`): a TensorRT engine and its `MODEL.plan.json` (GPU only).

Everything that needs no GPU — reading the ONNX, the batch options, the output location — is checked first, so a
mistake is reported as such on any machine; then TensorRT builds, and in a bundle the plan must reproduce the golden
torch outputs within its precision's tolerance before plan, plan.json and the manifest entry are published.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import ArtifactRecord, write_manifest
from onebyone.runtime.bundle.plan import (
    BuildOptions,
    PlanInfo,
    plan_info_path,
    profile_shapes,
    profile_text,
    profiles_from_record,
    profiles_record,
)
from onebyone.runtime.bundle.tensors import spec_records
from onebyone.runtime.bundle.tolerances import TOLERANCES, Tolerance
from onebyone.runtime.core.errors import CheckFailed, UserError, option
from onebyone.runtime.core.files import ensure_writable_dir, publish, sha256_file, staging_dir
from onebyone.runtime.core.version import installed_tensorrt
from onebyone.runtime.parity.metrics import Parity, check_golden
from onebyone.runtime.preflight.lint import lint_model
from onebyone.runtime.preflight.operators import tables_for
from onebyone.runtime.sessions.locate import PLAN_KIND, locate
from onebyone.runtime.sessions.target import Target


@dataclasses.dataclass
class BuildResult:
    """The plan written, what plan.json records of it, and (in a bundle) its golden check."""

    output: Path
    info: PlanInfo
    parity: Parity | None  # the plan against the bundle's golden torch outputs; None outside a bundle
    recorded: bool  # listed in the bundle's manifest (the plan was written into its bundle)

    def describe(self) -> str:
        info = self.info
        profiles = "; ".join(f"profile {index}: {profile_text(profile)}"
                             for index, profile in enumerate(profiles_from_record(info.profiles)))
        text = (f"built {self.output} in {info.build_seconds:.1f} s: TensorRT {info.tensorrt}, {info.gpu} "
                f"(compute {info.compute_capability}), {info.precision}, {profiles}")
        if self.parity is not None:
            text += f"\n{self.output.name}  {info.precision}  TensorRT vs torch: {self.parity.describe()}"
        return text


def build(onnx: Path, output: Path | None, options: BuildOptions) -> BuildResult:
    """Build `onnx` into `output` (default: beside it, suffix .plan). Raises UserError for what can be fixed before
    building (options, inputs, the output folder, a missing GPU or TensorRT), CheckFailed when the engine does not
    reproduce the bundle's golden outputs (nothing written)."""
    from onebyone.runtime.bundle.onnx_file import graph_precision, io_specs, load_model
    from onebyone.runtime.sessions.tensorrt_build import build_plan

    model = load_model(onnx)
    lint = lint_model(model, tables_for(installed_tensorrt()), onnx.name)
    if not lint.accepted:
        raise CheckFailed(f"TensorRT's ONNX parser would refuse {onnx} (onebyone lint; nothing was built): "
                          + "; ".join(lint.refusals()))
    inputs, outputs = io_specs(model)
    profiles = profile_shapes(inputs, options)
    output = output or onnx.with_suffix(".plan")
    ensure_writable_dir(output.parent)
    source = locate(onnx, "onnxruntime")
    record = source.record
    precision = record.precision if record is not None and record.precision else graph_precision(model)
    tolerance = record.tolerance if record is not None and record.tolerance else TOLERANCES[precision]
    golden = Golden.load(source.bundle / source.manifest.golden_of(source.record_name)) \
        if source.bundle is not None else None
    with staging_dir(output.parent) as stage:
        staged = stage / output.name
        built = build_plan(onnx, staged, profiles, options)
        info = PlanInfo(onnx={"name": str(onnx), "sha256": sha256_file(onnx)},
                        plan_sha256=sha256_file(staged), precision=precision, profiles=profiles_record(profiles),
                        options={k: str(v) if isinstance(v, Path) else v
                                 for k, v in dataclasses.asdict(options).items() if k != "shapes"},
                        metadata=dict(model.metadata_props),
                        io={"inputs": spec_records(inputs), "outputs": spec_records(outputs)}, **built)
        plan_info_path(staged).write_text(info.to_json())
        parity = _golden_parity(staged, golden, tolerance) if golden is not None else None
        if parity is not None and not parity.ok:
            raise CheckFailed(f"the engine does not match torch: {parity.describe()}; nothing was written")
        publish(staged, output)
        publish(plan_info_path(staged), plan_info_path(output))
        recorded = parity is not None and output.parent.resolve() == source.bundle.resolve()
        if recorded:
            _record(source, output, info, parity)
    return BuildResult(output, info, parity, recorded)


def _golden_parity(staged: Path, golden: Golden, tolerance: Tolerance) -> Parity:
    """Run the bundle's golden inputs through the staged plan (the plan.json beside it) and compare."""
    from onebyone.runtime.sessions.engines import OpenOptions
    from onebyone.runtime.sessions.tensorrt_backend import TensorRTSession

    with TensorRTSession(Target.file("plan", staged), OpenOptions()) as session:
        within = golden.within(session.accepts)
        if within is None:
            sizes = ", ".join("x".join(map(str, shape[1:])) for shape in golden.input_shapes())
            raise UserError(f"the engine's optimization profiles contain none of the input sizes the export was "
                            f"checked at ({sizes}), so it cannot be checked against torch; widen "
                            f"{option('shapes', 'NAME:MIN..OPT..MAX')} to cover one")
        return check_golden(within, session.run_batched, tolerance)


def _record(source: Target, output: Path, info: PlanInfo, parity: Parity) -> None:
    """Add the plan and its plan.json to the bundle manifest (so a re-export removes them as stale)."""
    manifest = source.manifest
    made_by = {"stage": "build", "onnx": source.path.name, "tensorrt": info.tensorrt, "gpu": info.gpu,
               "compute_capability": info.compute_capability, "options": info.options}
    manifest.artifacts[output.name] = ArtifactRecord.for_file(
        output, kind=PLAN_KIND, made_by=made_by, precision=info.precision, tolerance=parity.tolerance,
        parity=parity.as_record(), golden=source.record.golden if source.record is not None else None)
    manifest.artifacts[plan_info_path(output).name] = ArtifactRecord.for_file(
        plan_info_path(output), kind="tensorrt-plan-info", made_by={"stage": "build", "belongs_to": output.name})
    write_manifest(source.bundle, manifest)
