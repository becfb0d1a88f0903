"""`onebyone optimize IN.onnx -o OUT.onnx`: verified graph passes."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rich.console import Console

from onebyone.optimize.targets import PASS_NAMES, TARGETS
from onebyone.runtime.core.files import atomic_write

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = f"Graph passes: {', '.join(PASS_NAMES)}."
    parser.add_argument("input", type=Path, help="ONNX file (in a bundle, the manifest is updated)")
    parser.add_argument("-o", "--output", type=Path, help="output ONNX file (default: INPUT.opt.onnx)")
    parser.add_argument("--target", default="generic", choices=TARGETS, help="deployment target (default generic)")
    parser.add_argument("--passes",
                        help=f"comma-separated passes to run instead of the target's ({', '.join(PASS_NAMES)})")
    parser.add_argument("--verify", action="store_true",
                        help="run ONNX Runtime before/after every pass on fresh random inputs; fail on a mismatch")
    parser.add_argument("--report", type=Path, help="write the per-pass report as JSON")
    parser.set_defaults(run=run)


def default_output(source: Path) -> Path:
    return source.with_name(source.name.removesuffix(".onnx") + ".opt.onnx")


def run(args: argparse.Namespace) -> int:
    from onebyone.optimize.artifact import write_artifact
    from onebyone.optimize.pipeline import run_passes, select_passes
    from onebyone.optimize.verify import Verifier
    from onebyone.runtime.bundle.onnx_file import load_model
    from onebyone.runtime.bundle.tolerances import TOLERANCES

    passes = select_passes(args.target, args.passes.split(",") if args.passes is not None else None)
    model = load_model(args.input)
    output = args.output or default_output(args.input)
    verifier = Verifier(model) if args.verify else None
    reports = run_passes(model, passes, verifier)
    for report in reports:
        note = f"  verified {report.verification['relative']:.1e}" if report.verification else ""
        stdout.print(f"{report.name:<16} {'changed' if report.changed else 'no change':<9} "
                     f"{sum(report.ops_before.values())} → {sum(report.ops_after.values())} ops  "
                     f"{report.seconds:.2f}s{note}")
        for refusal in report.refusals:
            stdout.print(f"  refused at {refusal.node}: {refusal.reason}")
    made_by = {"stage": "optimize", "from": args.input.name, "target": args.target,
               "passes": [report.name for report in reports]}
    bundle_line = write_artifact(model, args.input, output, "fp32", TOLERANCES["fp32"], made_by)
    if args.report:
        with atomic_write(args.report) as tmp:
            tmp.write_text(json.dumps({"input": str(args.input), "output": str(output), "target": args.target,
                                       "passes": [dataclasses.asdict(r) for r in reports]}, indent=2) + "\n")
    stdout.print(bundle_line)
    return 0
