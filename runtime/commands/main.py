"""`onebyone <stage> ...`: one command line; each stage registers its own subcommand.

Stages are found through the `onebyone.stages` entry-point group (see pyproject.toml); each entry point is a
`register(subparsers)` function that adds a subparser and sets `run=callable(args) -> int` as its default.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points

from rich.console import Console
from rich.markup import escape

from onebyone.runtime.core.errors import Int8OverflowWarning, UserError
from onebyone.runtime.core.version import __version__

stderr = Console(stderr=True, highlight=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onebyone",
        description="Bottleneck CNNs from PyTorch to verified ONNX, FP16/INT8 and TensorRT.",
    )
    parser.add_argument("--version", action="version", version=f"onebyone {__version__}")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for entry in sorted(entry_points(group="onebyone.stages"), key=lambda e: e.name):
        entry.load()(stages)
    return parser


def _one_line_warnings(show: Callable[..., None]) -> Callable[..., None]:
    """A `warnings.showwarning` that prints onebyone's own warnings as one `warning:` line (no source location)
    and hands the others to `show`."""

    def shown(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        if issubclass(category, Int8OverflowWarning):
            stderr.print(f"[bold yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
        else:
            show(message, category, *args, **kwargs)

    return shown


def main(argv: list[str] | None = None) -> int:
    """Run one stage. Exit codes: 0 ok, 1 a check failed, 2 a user error (message, no traceback), 130 interrupted."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return int(args.run(args) or 0)
    except UserError as err:
        stderr.print(f"[bold red]error:[/] {escape(str(err))}", soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        stderr.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
