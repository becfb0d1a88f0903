"""`onebyone verify BUNDLE`: the command line of verify (runtime/sessions/bundle_check.py holds it;
`onebyone.stages.verify` is the same from Python). Exit 1 when an artifact was modified since it was recorded, is out
of tolerance, or fails its kernel check on the engine `auto` uses."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from onebyone.runtime.core.errors import CheckFailed

if TYPE_CHECKING:
    from onebyone.runtime.parity.kernel_check import KernelCheck
    from onebyone.runtime.preflight.lint import Lint

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory (has manifest.json)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """One parity line per artifact (with top-1 accuracy when the bundle carries labelled data), and one line per
    CPU engine's kernel check of each INT8 file."""
    from onebyone.stages import verify

    result = verify(args.bundle)
    if result.labelled is not None:
        stdout.print(f"labelled data: {result.labelled}")
    for artifact in result.artifacts:
        if artifact.precision is None:
            stdout.print(f"{artifact.name:<24} FAIL  {artifact.verdict}")
        else:
            skip = "SKIP  " if artifact.skipped else ""
            stdout.print(f"{artifact.name:<24} {artifact.precision:<5} {skip}{artifact.verdict}")
        print_engine_checks(artifact.kernel_checks, artifact.auto_engine)
        if artifact.lint is not None:
            print_lint(artifact.lint)
    if result.failed:
        raise CheckFailed(f"{len(result.failed)} artifact(s) of {args.bundle} failed their checks (above): "
                          f"{', '.join(result.failed)}")
    return 0


def print_lint(lint: Lint) -> None:
    """One line: the TensorRT releases whose parser rules the file passes, or each rule it breaks."""
    warnings = sum(len(v.warnings) for v in lint.verdicts)
    state = "accepted" if lint.accepted else "REFUSED: " + "; ".join(lint.refusals())
    stdout.print(f"{'':<31}TensorRT {' and '.join(lint.versions)} parser rules (onebyone lint): {state}"
                 + (f", {warnings} warnings" if warnings else ""))


def print_engine_checks(results: dict[str, KernelCheck], chosen: str | None) -> None:
    """One line per engine's kernel check, naming the engine `auto` opens the file on."""
    for engine, check in results.items():
        role = "auto" if engine == chosen else ("not used by auto here" if not check.ok else "")
        stdout.print(f"{'':<30} {engine:<11} {check.describe()}" + (f"  ({role})" if role else ""))
