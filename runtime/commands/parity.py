"""`onebyone parity REFERENCE CANDIDATE...`: the command line of parity (runtime/sessions/comparison.py holds it;
`onebyone.stages.parity` is the same from Python). Exit codes: 0 all pass, 1 a candidate fails, 2 a user error."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.runtime.commands.arguments import add_data_source, backend_choices, options_from
from onebyone.runtime.core.errors import CheckFailed

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="zoo name, package.module:factory, bundle directory (its torch model) "
                                          "or an FP32 .onnx")
    parser.add_argument("candidates", nargs="+", help=".onnx, .plan or bundle directories")
    add_data_source(parser, "--data", "--samples", "{sources}; plain `digits` is digits-test (default: the bundle's "
                    "labelled data, else random)", "use at most this many samples")
    parser.add_argument("--json", type=Path, help="write every metric and layer as JSON")
    parser.add_argument("--report", type=Path, help="write a self-contained HTML report with plots")
    parser.add_argument("--max-rel", type=float, help="override max|diff|/max|ref| for every candidate")
    parser.add_argument("--min-cosine", type=float, help="override the cosine-similarity bound")
    parser.add_argument("--min-top1", type=float, help="override the top-1 agreement bound (0..1)")
    parser.add_argument("--no-layers", dest="layers", action="store_false", help="skip per-layer localisation")
    parser.add_argument("--backend", choices=backend_choices(), default="auto",
                        help="the engine that runs the candidates (default auto, as in `onebyone infer`)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.sessions.comparison import ParityOptions
    from onebyone.stages import parity

    result = parity(args.reference, args.candidates, options_from(args, ParityOptions))
    stdout.print(result.describe())
    if args.report is not None:
        stdout.print(f"report: {args.report}")
    if result.failed:
        raise CheckFailed(f"{', '.join(result.failed)} out of bounds (above)")
    return 0
