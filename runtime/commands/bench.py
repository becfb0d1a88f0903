"""`onebyone bench ARTIFACT... --batch 1,8,32 [--backend B,...]`: latency and throughput of any artifacts, side by side.

All artifacts are opened as sessions (self-checked) and fed the same input per batch size: the first artifact's
golden inputs repeated to the batch when it belongs to a bundle, else fixed-seed N(0, 1). After a warm-up they are
timed interleaved round by round (see runtime.bench), so drift in the machine affects all alike. Per artifact and
batch: median/p90/p99 latency, throughput, the ratio to the first artifact (median of per-round pairs), and how far
its outputs are from the first artifact's on that input.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import GOLDEN_NAME
from onebyone.runtime.bundle.tensors import DYNAMIC
from onebyone.runtime.commands.infer import add_session_options
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.timing import machine, time_interleaved
from onebyone.runtime.parity.metrics import measure
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.opening import open as open_session

stdout = Console(highlight=False, soft_wrap=True)
MIN_ROUNDS = 5
INPUT_SEED = 0


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
    parser.add_argument("--batch", type=batch_list, default=[1, 8], help="batch sizes, e.g. 1,8,32 (default 1,8)")
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="timing budget per artifact and batch size (default 10; at least 5 rounds)")
    parser.add_argument("--labels", type=lambda text: text.split(","), help="names for the artifacts, in order")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as a Markdown section")
    add_session_options(parser, backend_per_artifact=True)
    parser.set_defaults(run=run)


def _feed(session: Session, batch: int) -> dict[str, np.ndarray]:
    """The bundle's golden inputs repeated to `batch` (real data where the model has some, e.g. digits), else
    standard-normal inputs from a fixed seed."""
    golden_path = session.target.bundle / GOLDEN_NAME if session.target.bundle is not None else None
    if golden_path is not None and golden_path.is_file():
        golden = Golden.load(golden_path).inputs
        return {name: np.resize(value, (batch, *value.shape[1:])) for name, value in golden.items()}
    rng = np.random.default_rng(INPUT_SEED + batch)
    feed = {}
    for spec in session.inputs:
        shape = [batch if axis == 0 and size == DYNAMIC else size for axis, size in enumerate(spec.shape)]
        feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feed


def _accepts(session: Session, feed: dict[str, np.ndarray]) -> bool:
    batch = len(next(iter(feed.values())))
    fixed = {spec.shape[0] for spec in session.inputs if spec.shape and spec.shape[0] != DYNAMIC}
    upper = session.batch_range.maximum
    return (not fixed or fixed == {batch}) and session.batch_range.minimum <= batch and (upper is None
                                                                                          or batch <= upper)


def _difference(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Max |diff| relative to max |reference| over all outputs, and top-1 agreement of class scores."""
    metrics = measure(reference, outputs, None)
    return {"max_rel_diff_vs_first": metrics.max_rel, "top1_agreement_vs_first": metrics.top1_agreement}


def bench(sessions: dict[str, Session], batches: list[int], seconds: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    first_label, first = next(iter(sessions.items()))
    for batch in batches:
        feed = _feed(first, batch)
        runnable = {label: s for label, s in sessions.items() if _accepts(s, feed)}
        rows.extend({"artifact": label, "batch": batch, "skipped": "batch outside what the artifact accepts"}
                    for label in sessions if label not in runnable)
        if first_label not in runnable:
            continue
        outputs, probe = {}, 0.0
        for label, session in runnable.items():  # one untimed run each: warm-up, cost probe, outputs to compare
            started = time.perf_counter()
            outputs[label] = session.run(feed)
            probe += time.perf_counter() - started
        rounds = max(MIN_ROUNDS, math.ceil(seconds * len(runnable) / probe))
        timings = time_interleaved({label: (lambda s=s, f=feed: s.run(f)) for label, s in runnable.items()}, batch,
                                   rounds, warmup=1, label="bench")
        for label, timing in timings.items():
            rows.append({"artifact": label, **timing.as_record(), "vs_first": timing.speedup_over(timings[first_label]),
                         **_difference(outputs[first_label], outputs[label])})
    return rows


def render(rows: list[dict[str, Any]], sessions: dict[str, Session]) -> Table:
    table = Table(title="onebyone bench (ratios: throughput vs the first artifact, paired per round)")
    for column in ("artifact", "backend", "batch", "median ms", "p90 ms", "p99 ms", "samples/s", "× first",
                   "rel. diff vs first"):
        table.add_column(column, justify="left" if column in ("artifact", "backend") else "right", no_wrap=True)
    for row in rows:
        backend = sessions[row["artifact"]].backend
        if "skipped" in row:
            table.add_row(row["artifact"], backend, str(row["batch"]), row["skipped"], "", "", "", "", "")
            continue
        table.add_row(row["artifact"], backend, str(row["batch"]), f"{row['median_ms']:.2f}", f"{row['p90_ms']:.2f}",
                      f"{row['p99_ms']:.2f}", f"{row['throughput']:.1f}", f"{row['vs_first']:.2f}×",
                      f"{row['max_rel_diff_vs_first']:.1e}")
    return table


def markdown(rows: list[dict[str, Any]], sessions: dict[str, Session]) -> str:
    lines = ["## Runtime sessions (`onebyone bench`)", "",
             f"Throughput ratios are relative to the first artifact, each the median of per-round pairs. "
             f"CPU: {this_cpu().describe()}.", "",
             "| artifact | backend | batch | median ms | p90 ms | p99 ms | samples/s | × first | rel. diff vs first |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        if "skipped" not in row:
            lines.append(f"| {row['artifact']} | {sessions[row['artifact']].backend} | {row['batch']} | "
                         f"{row['median_ms']:.2f} | {row['p90_ms']:.2f} | {row['p99_ms']:.2f} | "
                         f"{row['throughput']:.1f} | {row['vs_first']:.2f}× | {row['max_rel_diff_vs_first']:.1e} |")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    labels = args.labels or list(args.artifacts)
    if len(labels) != len(args.artifacts) or len(set(labels)) != len(labels):
        raise UserError(f"--labels needs {len(args.artifacts)} distinct names, one per artifact")
    backends = args.backend * len(args.artifacts) if len(args.backend) == 1 else args.backend
    if len(backends) != len(args.artifacts):
        raise UserError(f"--backend needs one backend, or {len(args.artifacts)}, one per artifact")
    sessions: dict[str, Session] = {}
    try:
        for label, artifact, backend in zip(labels, args.artifacts, backends, strict=True):
            sessions[label] = open_session(artifact, backend, providers=args.providers, self_check=args.self_check)
            stdout.print(f"{label}: {sessions[label].describe()}; {sessions[label].self_check_note}")
        names = {tuple((s.name, s.shape[1:]) for s in session.inputs) for session in sessions.values()}
        if len(names) > 1:
            raise UserError("the artifacts take different inputs, so they cannot be fed the same batch: "
                            + "; ".join(f"{k}: {[s.describe() for s in v.inputs]}" for k, v in sessions.items()))
        rows = bench(sessions, args.batch, args.seconds)
        wide = Console(highlight=False, width=None if stdout.is_terminal else 160)  # files and pipes: no truncation
        wide.print(render(rows, sessions))
        record = {"machine": machine(), "seconds": args.seconds,
                  "artifacts": [{"label": label, "target": artifact, "backend": s.backend, "device": s.device,
                                 "precision": s.model.precision, "self_check": s.self_check_note}
                                for (label, s), artifact in zip(sessions.items(), args.artifacts, strict=True)],
                  "results": rows}
        if args.json is not None:
            with atomic_write(args.json) as tmp:
                tmp.write_text(json.dumps(record, indent=2) + "\n")
        if args.markdown is not None:
            with atomic_write(args.markdown) as tmp:
                tmp.write_text(markdown(rows, sessions))
    finally:
        for session in sessions.values():
            session.close()
    return 0
