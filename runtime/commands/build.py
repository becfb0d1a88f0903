"""`onebyone build MODEL.onnx [-o MODEL.plan]`: a TensorRT engine and its `MODEL.plan.json` (GPU only).

Everything that needs no GPU — reading the ONNX, the batch options, the output location — is checked first, so a
mistake is reported as such on any machine; then TensorRT builds, and in a bundle the plan must reproduce the golden
torch outputs within its precision's tolerance before plan, plan.json and the manifest entry are published.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from rich.console import Console

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, ArtifactRecord, write_manifest
from onebyone.runtime.bundle.plan import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MIN_BATCH,
    BuildOptions,
    PlanInfo,
    plan_info_path,
    profile_shapes,
    profiles_record,
)
from onebyone.runtime.bundle.tensors import spec_records
from onebyone.runtime.bundle.tolerances import TOLERANCES, Tolerance
from onebyone.runtime.commands.arguments import positive_int
from onebyone.runtime.core.errors import CheckFailed
from onebyone.runtime.core.files import ensure_writable_dir, publish, sha256_file, staging_dir
from onebyone.runtime.parity.metrics import Parity, check_golden
from onebyone.runtime.sessions.locate import PLAN_KIND, Target, locate

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Build a strongly typed TensorRT engine: precision comes from the ONNX (FP16 types, "
                          "Q/DQ). Writes MODEL.plan and MODEL.plan.json (TensorRT version, GPU, ONNX sha256, "
                          "profiles).")
    parser.add_argument("onnx", type=Path, help="ONNX file (an export, optimize or quantize output)")
    parser.add_argument("-o", "--output", type=Path, help="plan path (default: beside the ONNX, suffix .plan)")
    parser.add_argument("--min-batch", type=positive_int, default=DEFAULT_MIN_BATCH)
    parser.add_argument("--opt-batch", type=positive_int, help="batch TensorRT tunes for (default min(8, max))")
    parser.add_argument("--max-batch", type=positive_int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--workspace", type=positive_int, metavar="MIB", help="workspace limit in MiB")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file, read if present and updated")
    parser.add_argument("--opt-level", type=int, default=3, choices=range(6), metavar="0-5",
                        help="builder optimization level (default 3)")
    parser.set_defaults(run=run)


def _golden_parity(staged: Path, golden: Golden, tolerance: Tolerance) -> Parity:
    """Run the bundle's golden inputs through the staged plan (the plan.json beside it) and compare."""
    from onebyone.runtime.sessions.tensorrt_backend import TensorRTSession

    with TensorRTSession(Target("plan", staged, None, None, None, None, None)) as session:
        return check_golden(golden, session.run_batched(golden.inputs), tolerance)


def _record(source: Target, output: Path, info: PlanInfo, parity: Parity) -> None:
    """Add the plan and its plan.json to the bundle manifest (so a re-export removes them as stale)."""
    manifest = source.manifest
    made_by = {"stage": "build", "onnx": source.path.name, "tensorrt": info.tensorrt, "gpu": info.gpu,
               "compute_capability": info.compute_capability, "options": info.options}
    manifest.artifacts[output.name] = ArtifactRecord.for_file(
        output, kind=PLAN_KIND, made_by=made_by, precision=info.precision, tolerance=parity.tolerance,
        parity=parity.as_record())
    manifest.artifacts[plan_info_path(output).name] = ArtifactRecord.for_file(
        plan_info_path(output), kind="tensorrt-plan-info", made_by={"stage": "build", "belongs_to": output.name})
    write_manifest(source.bundle, manifest)


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.bundle.onnx_file import graph_precision, io_specs, load_model
    from onebyone.runtime.sessions.tensorrt_build import build_plan

    model = load_model(args.onnx)
    options = BuildOptions(min_batch=args.min_batch, opt_batch=args.opt_batch, max_batch=args.max_batch,
                           workspace_mib=args.workspace, timing_cache=args.timing_cache, opt_level=args.opt_level)
    inputs, outputs = io_specs(model)
    profiles = profile_shapes(inputs, options)
    output = args.output or args.onnx.with_suffix(".plan")
    ensure_writable_dir(output.parent)
    source = locate(args.onnx, "onnxruntime")
    record = source.record
    precision = record.precision if record is not None and record.precision else graph_precision(model)
    tolerance = record.tolerance if record is not None and record.tolerance else TOLERANCES[precision]
    golden = Golden.load(source.bundle / GOLDEN_NAME) if source.bundle is not None else None
    with staging_dir(output.parent) as stage:
        staged = stage / output.name
        built = build_plan(args.onnx, staged, profiles, options)
        info = PlanInfo(onnx={"name": str(args.onnx), "sha256": sha256_file(args.onnx)},
                        plan_sha256=sha256_file(staged), precision=precision, profiles=profiles_record(profiles),
                        options={k: str(v) if isinstance(v, Path) else v
                                 for k, v in dataclasses.asdict(options).items()},
                        metadata=dict(model.metadata_props),
                        io={"inputs": spec_records(inputs), "outputs": spec_records(outputs)}, **built)
        plan_info_path(staged).write_text(info.to_json())
        stdout.print(f"built {output} in {info.build_seconds:.1f} s: TensorRT {info.tensorrt}, {info.gpu} "
                     f"(compute {info.compute_capability}), {precision}, batch "
                     f"{options.min_batch}..{options.max_batch}")
        parity = _golden_parity(staged, golden, tolerance) if golden is not None else None
        if parity is not None:
            stdout.print(f"{output.name}  {precision}  TensorRT vs torch: {parity.describe()}")
            if not parity.ok:
                raise CheckFailed(f"the engine does not match torch: {parity.describe()}; nothing was written")
        publish(staged, output)
        publish(plan_info_path(staged), plan_info_path(output))
        if parity is not None and output.parent.resolve() == source.bundle.resolve():
            _record(source, output, info, parity)
    return 0
