"""What the stage CLIs share: argument types, argument groups (sessions, batching, data sources) and the step from
parsed arguments to a stage's options object."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TypeVar

Options = TypeVar("Options")


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number ≥ 0")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


BACKEND_HELP = ("auto (default): zoo name → torch, .plan → tensorrt, .onnx/bundle → onnxruntime, or openvino where "
                "`make bench` measured it faster for the artifact's kind on this CPU's class (a bf16 artifact: "
                "openvino); openvino needs onebyone[openvino]; other engines: their own file suffixes")


def backend_choices() -> tuple[str, ...]:
    """auto and every engine of the registry (names only: no engine package is imported)."""
    from onebyone.runtime.sessions import engines

    return ("auto", *engines.names())


def backend_list(text: str) -> list[str]:
    """A comma-separated list of backends, e.g. `torch,onnxruntime,openvino`."""
    backends = text.split(",")
    if unknown := [b for b in backends if b not in backend_choices()]:
        raise argparse.ArgumentTypeError(f"unknown backend {unknown[0]!r}: choose from {', '.join(backend_choices())}")
    return backends


def add_session_options(parser: argparse.ArgumentParser, self_check_flag: bool = True,
                        backend_per_artifact: bool = False) -> None:
    """Session options, for commands that open sessions: --backend (one, or with `backend_per_artifact` a
    comma-separated list, one per artifact), --providers and (unless the command always checks) --no-self-check."""
    if backend_per_artifact:
        parser.add_argument("--backend", dest="backends", type=backend_list, default=["auto"],
                            help=f"one backend for all artifacts, or one per artifact in order, e.g. "
                                 f"torch,onnxruntime,openvino; {BACKEND_HELP}")
    else:
        parser.add_argument("--backend", choices=backend_choices(), default="auto", help=BACKEND_HELP)
    parser.add_argument("--providers", type=lambda text: [p for p in text.split(",") if p],
                        help="onnxruntime execution providers in order, e.g. cuda,cpu (default: the best available)")
    if self_check_flag:
        parser.add_argument("--no-self-check", dest="self_check", action="store_false",
                            help="do not verify a bundle artifact against its golden outputs when opening it")


def add_batching_options(parser: argparse.ArgumentParser) -> None:
    """Dynamic batching (the server's, or a Triton model's): --max-batch, --max-delay-ms, --no-batching."""
    parser.add_argument("--max-batch", type=positive_int, default=32, help="largest batch formed (default 32)")
    parser.add_argument("--max-delay-ms", type=non_negative_float, default=2.0,
                        help="longest a request waits for others to batch with (default 2)")
    parser.add_argument("--no-batching", action="store_true", help="run every request on its own")


def max_delay_us(args: argparse.Namespace) -> int | None:
    """The batching queue delay in microseconds; None with --no-batching."""
    return None if args.no_batching else round(args.max_delay_ms * 1000)


def add_data_source(parser: argparse.ArgumentParser, flag: str, samples_flag: str, role: str,
                    samples_help: str, samples_default: int | None = None) -> None:
    """A data source argument (runtime/bundle/sources.py names the kinds) and how many of its samples to use."""
    from onebyone.runtime.bundle.sources import SOURCES_HELP

    parser.add_argument(flag, metavar="SOURCE", help=role.format(sources=SOURCES_HELP))
    parser.add_argument(samples_flag, type=positive_int, default=samples_default, metavar="N", help=samples_help)


def names(text: str) -> tuple[str, ...]:
    """A comma-separated list of names (node names, labels); blanks dropped."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'160x96,96x160' → ((160, 96), (96, 160)): image sizes, height × width."""
    found = []
    for part in names(text):
        height, _, width = part.partition("x")
        if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
            raise argparse.ArgumentTypeError(f"{part!r} is not HxW with two positive integers (e.g. 160x96)")
        found.append((int(height), int(width)))
    return tuple(found)


def options_from(args: argparse.Namespace, kind: type[Options], **overrides: object) -> Options:
    """The stage's options object from parsed arguments: each dataclass field from the argument of the same dest
    (a command names its dests after the fields), the fields it has no argument for left at their defaults."""
    present = {f.name: getattr(args, f.name) for f in dataclasses.fields(kind) if hasattr(args, f.name)}  # type: ignore[arg-type]
    return kind(**(present | overrides))
