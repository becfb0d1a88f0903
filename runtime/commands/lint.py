"""`onebyone lint MODEL.onnx [--tensorrt VERSION]... [--json PATH]`: will TensorRT's ONNX parser take this file?
Checked on this machine, without TensorRT, against each named release's published rules (runtime/preflight/).
Exit 0 when every named release accepts it, 1 when one refuses it, 2 for an unreadable file or bad usage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from onebyone.runtime.core.errors import CheckFailed
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.preflight.operators import DEFAULT, KNOWN

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="any ONNX file: onebyone's or another tool's")
    parser.add_argument("--tensorrt", action="append", metavar="VERSION", choices=KNOWN,
                        help=f"a TensorRT release to check for (repeatable; known: {', '.join(KNOWN)}; "
                             f"default: {' and '.join(DEFAULT)})")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the verdicts as JSON")
    parser.add_argument("--warnings", action="store_true", help="list every warning, not only their count")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.stages import lint

    result = lint(args.model, args.tensorrt)
    if args.json is not None:
        with atomic_write(args.json) as tmp:
            tmp.write_text(json.dumps(result.record(), indent=2) + "\n")
    for verdict in result.verdicts:
        state = "accepted" if verdict.accepted else f"[bold red]refused[/] ({len(verdict.problems)} problems)"
        stdout.print(f"TensorRT {verdict.tensorrt}: {state}, {len(verdict.warnings)} warnings")
        for problem in verdict.problems:
            stdout.print(f"  {escape(problem.line())}")
        for warning in verdict.warnings if args.warnings else ():
            stdout.print(f"  warning: {escape(warning.line())}")
    if not result.accepted:
        refusing = [v.tensorrt for v in result.verdicts if not v.accepted]
        raise CheckFailed(f"TensorRT {', '.join(refusing)} would refuse {args.model} (rules above)")
    return 0
