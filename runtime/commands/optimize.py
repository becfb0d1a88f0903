"""`onebyone optimize IN.onnx -o OUT.onnx`: verified graph passes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from onebyone.optimize.targets import DEFAULT_TARGET, PASSES, TARGETS

if TYPE_CHECKING:
    from onebyone.optimize.passes.base import Refusal

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = f"Graph passes: {', '.join(PASSES)}."
    parser.add_argument("input", type=Path, help="ONNX file (in a bundle, the manifest is updated)")
    parser.add_argument("-o", "--output", type=Path, help="output ONNX file (default: INPUT.opt.onnx)")
    parser.add_argument("--target", default=DEFAULT_TARGET, choices=TARGETS,
                        help=f"deployment target (default {DEFAULT_TARGET})")
    parser.add_argument("--passes",
                        help=f"comma-separated passes to run instead of the target's ({', '.join(PASSES)})")
    parser.add_argument("--verify", action="store_true",
                        help="run ONNX Runtime before/after every pass on fresh random inputs; fail on a mismatch")
    parser.add_argument("--report", type=Path, help="write the per-pass report as JSON")
    parser.add_argument("--verbose", action="store_true",
                        help="list every refused rewrite (default: one line per kind of refusal, with a count)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.optimize.stage import OptimizeOptions
    from onebyone.stages import optimize

    options = OptimizeOptions(output=args.output, target=args.target, verify=args.verify, report=args.report,
                              passes=tuple(args.passes.split(",")) if args.passes is not None else None)
    result = optimize(args.input, options)
    for report in result.passes:
        note = f"  verified {report.verification['relative']:.1e}" if report.verification else ""
        stdout.print(f"{report.name:<16} {'changed' if report.changed else 'no change':<9} "
                     f"{sum(report.ops_before.values())} → {sum(report.ops_after.values())} ops  "
                     f"{report.seconds:.2f}s{note}")
        for line in refusal_lines(report.refusals, args.verbose):
            stdout.print(line)
    stdout.print(result.summary)
    return 0


def refusal_lines(refusals: list[Refusal], verbose: bool) -> list[str]:
    """A pass's refused rewrites: one line each with `verbose`, else one line per kind of reason (the reason with its
    node names and numbers left out), with a count and the first node."""
    if verbose:
        return [f"  refused at {refusal.node}: {refusal.reason}" for refusal in refusals]
    kinds: dict[str, list[Refusal]] = {}
    for refusal in refusals:
        kinds.setdefault(re.sub(r"\d+", "N", re.sub(r"'[^']*'", "'…'", refusal.reason)), []).append(refusal)
    return [f"  refused at {found[0].node}: {found[0].reason}" if len(found) == 1 else
            f"  refused {len(found)}×: {kind} (first at {found[0].node}; --verbose lists them)"
            for kind, found in kinds.items()]
