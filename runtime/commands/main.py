"""`onebyone <stage> ...`: one command line, one module per stage under runtime/commands.

STAGES names each stage's module and one-line summary. Only the module of the stage being run is imported: its
`register(parser)` adds the stage's arguments and sets `run=callable(args) -> int` as the parser's default, and its
heavy libraries (torch, ONNX, ONNX Runtime) load inside `run`. So `onebyone --help` and `onebyone STAGE --help`
stay fast (docs/cli.md; tests/test_cli_startup.py).
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable
from importlib import import_module
from typing import NoReturn

from rich.console import Console
from rich.markup import escape

from onebyone.runtime.core.errors import CheckFailed, OnebyoneWarning, UserError
from onebyone.runtime.core.version import __version__

stderr = Console(stderr=True, highlight=False)


STAGES: dict[str, tuple[str, str]] = {  # stage → (module under onebyone.runtime.commands, summary), in pipeline order
    "export": ("export", "export a model to an ONNX bundle, checked against torch"),
    "optimize": ("optimize", "fold BatchNorm and fuse 1x1 convs, each rewrite verifiable"),
    "quantize": ("quantize", "FP16 or calibrated INT8 (Q/DQ) ONNX, checked against torch"),
    "lint": ("lint", "will TensorRT 10/11 take this ONNX file? its parser's published rules, checked on the CPU"),
    "adopt": ("adopt", "make another tool's Q/DQ ONNX TensorRT-ready where the rewrite is exact, checked and linted"),
    "build": ("build", "build a TensorRT engine (.plan) from an ONNX file (NVIDIA GPU + TensorRT)"),
    "inspect": ("inspect", "per-layer type, precision and tactic of a TensorRT plan (NVIDIA GPU + TensorRT)"),
    "verify": ("verify", "check a bundle's ONNX artifacts and TensorRT plans against its golden torch outputs"),
    "infer": ("infer", "run an artifact on images or .npy inputs; classifiers print top-k"),
    "parity": ("parity", "compare artifacts with the torch reference: metrics, per-layer localisation, pass/fail "
                         "per precision"),
    "bench": ("bench", "latency/throughput of artifacts side by side, per batch size"),
    "serve": ("serve", "serve artifacts over KServe v2 HTTP (tritonclient-compatible), with dynamic batching"),
    "triton-repo": ("repo", "write a Triton model repository (config.pbtxt + model file)"),
}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one `error:` line naming where the options are listed (exit 2), not its
    usage block; every stage's parser is one (add_subparsers makes them of the parent's class)."""

    def error(self, message: str) -> NoReturn:
        stderr.print(f"[bold red]error:[/] {escape(message)} (`{self.prog} --help` lists the options)", soft_wrap=True)
        raise SystemExit(2)


NUMBER_LIST = re.compile(r"-\d[\d,x.]*")  # -1,8,8 or -4: a value, where argparse would read an option


def values_kept(argv: list[str]) -> list[str]:
    """`--opt -1,8,8` as `--opt=-1,8,8`: argparse takes a token starting with '-' for an option unless it is one plain
    negative number, so a shape list with a -1 needs the `=` spelling; this gives it."""
    kept: list[str] = []
    for token in argv:
        if kept and kept[-1].startswith("--") and "=" not in kept[-1] and NUMBER_LIST.fullmatch(token):
            kept[-1] = f"{kept[-1]}={token}"
        else:
            kept.append(token)
    return kept


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser for `argv`: every stage is listed, and the one `argv` names gets its arguments."""
    parser = OneLineParser(
        prog="onebyone",
        description="Bottleneck CNNs from PyTorch to verified ONNX, FP16/INT8 and TensorRT.",
    )
    parser.add_argument("--version", action="version", version=f"onebyone {__version__}")
    stages = parser.add_subparsers(dest="stage", required=True, metavar="STAGE")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module, summary) in STAGES.items():
        stage = stages.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        if name == chosen:
            import_module(f"onebyone.runtime.commands.{module}").register(stage)
            stage.set_defaults(flags=flags_of(stage))
    return parser


def flags_of(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's dest (the options-object field a library error names) → its flag, the positive spelling of a
    --x/--no-x pair."""
    flags = {}
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        spellings = [s for s in action.option_strings if s.startswith("--")]
        if spellings:
            flags[action.dest] = next((s for s in spellings if not s.startswith("--no-")), spellings[0])
    return flags


def cli_spelling(flags: dict[str, str]) -> Callable[[str, str | None], str]:
    """How the CLI writes an option a library error names: its flag, then the value (a positional: the value)."""

    def spelled(name: str, value: str | None) -> str:
        flag = flags.get(name)
        if flag is None:
            return value if value is not None else name.upper()
        return flag if value is None else f"{flag} {value}"

    return spelled


def _one_line_warnings(show: Callable[..., None]) -> Callable[..., None]:
    """A `warnings.showwarning` that prints onebyone's own warnings as one `warning:` line (no source location)
    and hands the others to `show`."""

    def shown(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
        if issubclass(category, OnebyoneWarning):
            stderr.print(f"[bold yellow]warning:[/] {escape(str(message))}", soft_wrap=True)
        else:
            show(message, category, *args, **kwargs)

    return shown


def main(argv: list[str] | None = None) -> int:
    """Run one stage. Exit codes: 0 ok, 1 a check failed, 2 a user error (message, no traceback), 130 interrupted."""
    argv = values_kept(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            return int(args.run(args) or 0)
    except UserError as err:
        stderr.print(f"[bold red]error:[/] {escape(err.spelled(cli_spelling(args.flags)))}", soft_wrap=True)
        return 2
    except CheckFailed as err:
        stderr.print(f"[bold red]check failed:[/] {escape(str(err))}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        stderr.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
