"""`onebyone optimize IN.onnx -o OUT.onnx`: verified graph passes."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import onnx_ir as ir
from rich.console import Console

from optimize.pipeline import PASSES, TARGETS, VerificationFailed, run_passes, select_passes
from optimize.verify import Verifier
from runtime.bundle import GOLDEN_NAME, TOLERANCES, ArtifactRecord, manifest_path, read_manifest, write_manifest
from runtime.check import check_artifact
from runtime.files import atomic_write, publish, staging_dir
from runtime.golden import Golden
from runtime.labelled import LabelledSet
from runtime.onnx_file import load_model, save_model

stdout = Console(highlight=False, soft_wrap=True)


def register(stages: argparse._SubParsersAction) -> None:
    parser = stages.add_parser("optimize", help="fold BatchNorm and fuse 1x1 convs, each rewrite verifiable",
                               description=f"Graph passes: {', '.join(PASSES)}.")
    parser.add_argument("input", type=Path, help="ONNX file (in a bundle, the manifest is updated)")
    parser.add_argument("-o", "--output", type=Path, help="output ONNX file (default: INPUT.opt.onnx)")
    parser.add_argument("--target", default="generic", choices=TARGETS, help="deployment target (default generic)")
    parser.add_argument("--passes", help=f"comma-separated passes to run instead of the target's ({', '.join(PASSES)})")
    parser.add_argument("--verify", action="store_true",
                        help="run ONNX Runtime before/after every pass on fresh random inputs; fail on a mismatch")
    parser.add_argument("--report", type=Path, help="write the per-pass report as JSON")
    parser.set_defaults(run=run)


def default_output(source: Path) -> Path:
    return source.with_name(source.name.removesuffix(".onnx") + ".opt.onnx")


def run(args: argparse.Namespace) -> int:
    passes = select_passes(args.target, args.passes.split(",") if args.passes is not None else None)
    model = load_model(args.input)
    output = args.output or default_output(args.input)
    verifier = Verifier(model) if args.verify else None
    try:
        reports = run_passes(model, passes, verifier)
    except VerificationFailed as err:
        stdout.print(f"[bold red]verification failed:[/] {err}; nothing was written")
        return 1
    for report in reports:
        note = f"  verified {report.verification['relative']:.1e}" if report.verification else ""
        stdout.print(f"{report.name:<16} {'changed' if report.changed else 'no change':<9} "
                     f"{sum(report.ops_before.values())} → {sum(report.ops_after.values())} ops  "
                     f"{report.seconds:.2f}s{note}")
        for refusal in report.refusals:
            stdout.print(f"  refused at {refusal.node}: {refusal.reason}")
    made_by = {"stage": "optimize", "from": args.input.name, "target": args.target,
               "passes": [report.name for report in reports]}
    bundle_line = _write(model, args.input, output, made_by)
    if bundle_line is None:
        return 1
    if args.report:
        with atomic_write(args.report) as tmp:
            tmp.write_text(json.dumps({"input": str(args.input), "output": str(output), "target": args.target,
                                       "passes": [dataclasses.asdict(r) for r in reports]}, indent=2) + "\n")
    stdout.print(bundle_line)
    return 0


def _write(model: ir.Model, source: Path, output: Path, made_by: dict) -> str | None:
    """Save `output`; when `source` is a bundle artifact and `output` sits beside it, check the result against
    the bundle's golden outputs first (publishing nothing if it fails) and record it in the manifest."""
    bundle = source.parent
    in_bundle = manifest_path(bundle).is_file() and output.parent.resolve() == bundle.resolve()
    manifest = read_manifest(bundle) if in_bundle else None
    if manifest is not None and source.name not in manifest.artifacts:
        manifest = None
    with staging_dir(output.parent) as stage:
        staged = stage / output.name
        written = save_model(model, staged)
        if manifest is None:
            for path in written:
                publish(path, output.parent / path.name)
            return f"{output}  written (not in a bundle: no golden check)"
        labelled = LabelledSet.of_bundle(bundle, manifest)
        source_record = manifest.artifacts[source.name]
        check = check_artifact(staged, Golden.load(bundle / GOLDEN_NAME), TOLERANCES["fp32"], labelled)
        if not check.ok:
            stdout.print(f"[bold red]{output} fails its golden check:[/] {check.describe()}; nothing was written")
            return None
        manifest.artifacts[output.name] = ArtifactRecord.for_file(
            staged, kind="onnx", precision=source_record.precision, tolerance=TOLERANCES["fp32"],
            parity=check.as_record(), made_by=made_by)
        for data_file in written[:-1]:
            manifest.artifacts[data_file.name] = ArtifactRecord.for_file(
                data_file, kind="onnx-external-data", made_by={"stage": "optimize", "belongs_to": output.name})
        for path in written:
            publish(path, bundle / path.name)
        write_manifest(bundle, manifest)
    return f"{output}  fp32  ORT vs torch: {check.describe()}"
