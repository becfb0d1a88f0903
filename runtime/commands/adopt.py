"""`onebyone adopt FOREIGN.onnx -o OUT.onnx [--tensorrt VERSION]...`: another tool's Q/DQ file made TensorRT-ready
where the rewrite is exact (optimize/adopt.py), checked against the foreign file on ONNX Runtime and linted. Exit 1
when a named release would still refuse it (the rules are listed; nothing is written)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.runtime.preflight.operators import DEFAULT, KNOWN

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a Q/DQ ONNX file from another tool (ONNX Runtime, a QAT export)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="where to write the adopted file")
    parser.add_argument("--tensorrt", action="append", metavar="VERSION", choices=KNOWN,
                        help=f"a TensorRT release it must pass (repeatable; default: {' and '.join(DEFAULT)})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.stages import adopt

    result = adopt(args.model, args.output, args.tensorrt)
    for rewrite, count in result.rewrites.items() or {"nothing to rewrite": 0}.items():
        stdout.print(f"{rewrite}: {count}" if count else rewrite)
    stdout.print(result.check)
    stdout.print(f"{result.output}  written; TensorRT {' and '.join(result.lint.versions)} parser rules: accepted")
    return 0
