"""`onebyone bench ARTIFACT... --batch 1,8,32 [--backend B,...]`: latency and throughput of any artifacts, side by side
(runtime/sessions/benchmark.py says how they are fed and timed)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from onebyone.runtime.commands.arguments import add_session_options, options_from, sizes

stdout = Console(highlight=False, soft_wrap=True)


def batch_list(text: str) -> list[int]:
    try:
        batches = [int(part) for part in text.split(",") if part]
    except ValueError:
        batches = []
    if not batches or min(batches) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive batch sizes")
    return batches


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None
    parser.add_argument("artifacts", nargs="+", help=".onnx, .plan, bundle directory, zoo name or module:factory; "
                                                     "ratios are relative to the first")
    parser.add_argument("--batch", dest="batches", type=batch_list, default=[1, 8],
                        help="batch sizes, e.g. 1,8,32 (default 1,8)")
    parser.add_argument("--sizes", type=sizes, default=(), metavar="HxW,...",
                        help="input sizes to time at, e.g. 256x256,512x512 (models with a dynamic height/width)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timing budget per artifact and batch size (default 10; at least 5 rounds)")
    parser.add_argument("--labels", type=lambda text: text.split(","), help="names for the artifacts, in order")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as a Markdown section")
    parser.add_argument("--title", default="Runtime sessions", help="the Markdown section's heading")
    add_session_options(parser, backend_per_artifact=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.sessions.benchmark import BenchOptions, bench

    result = bench(args.artifacts, options_from(args, BenchOptions))
    for artifact in result.artifacts:
        stdout.print(f"{artifact['label']}: {artifact['described']}; {artifact['self_check']}")
    table = Table(title="onebyone bench (ratios: throughput vs the first artifact, paired per round)")
    sized = bool(args.sizes)
    for column in ("artifact", "backend", *(("H×W",) if sized else ()), "batch", "median ms", "p90 ms", "p99 ms",
                   "samples/s", "× first", "rel. diff vs first"):
        table.add_column(column, justify="left" if column in ("artifact", "backend") else "right", no_wrap=True)
    for row in result.rows:
        cells = ([row["skipped"], "", "", "", "", ""] if "skipped" in row else
                 [f"{row['median_ms']:.2f}", f"{row['p90_ms']:.2f}", f"{row['p99_ms']:.2f}", f"{row['throughput']:.1f}",
                  f"{row['vs_first']:.2f}×", f"{row['max_rel_diff_vs_first']:.1e}"])
        size = (row.get("size", ""),) if sized else ()
        table.add_row(row["artifact"], result.backend_of(row["artifact"]), *size, str(row["batch"]), *cells)
    Console(highlight=False, width=None if stdout.is_terminal else 160).print(table)  # files, pipes: no truncation
    return 0
