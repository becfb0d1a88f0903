"""Latency and throughput of any artifacts side by side (`onebyone bench`, `onebyone.stages.bench`).

All artifacts are opened as sessions (self-checked) and fed the same input per batch size: the first artifact's
golden inputs repeated to the batch when it belongs to a bundle, else fixed-seed N(0, 1). After a warm-up they are
timed interleaved round by round (runtime/core/timing.py), so drift in the machine affects all alike. Per artifact
and batch: median/p90/p99 latency, throughput, the ratio to the first artifact (median of per-round pairs), and how
far its outputs are from the first artifact's on that input.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.preprocess import resized
from onebyone.runtime.bundle.tensors import DYNAMIC
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.errors import UserError, option
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.timing import machine, time_interleaved
from onebyone.runtime.parity.metrics import measure
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.opening import open as open_session

MIN_ROUNDS = 5
INPUT_SEED = 0


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """How to time. The defaults are the CLI's (`onebyone bench --help`)."""

    batches: Sequence[int] = (1, 8)  # batch sizes
    sizes: Sequence[tuple[int, int]] = ()  # input H×W to time at (a model with a dynamic H×W); () its own
    seconds: float = 10.0  # timing budget per artifact and batch size (at least MIN_ROUNDS rounds)
    labels: Sequence[str] | None = None  # names for the artifacts, in order (default: as given)
    backends: Sequence[str] = ("auto",)  # one backend for all artifacts, or one per artifact
    providers: Sequence[str] | None = None  # onnxruntime execution providers
    self_check: bool = True  # check bundle artifacts against their golden outputs when opening them
    json: Path | None = None  # write the result as JSON here
    markdown: Path | None = None  # write the table as a Markdown section here
    title: str = "Runtime sessions"  # the Markdown section's heading


@dataclasses.dataclass
class BenchResult:
    """The machine, each artifact as opened (label, target, backend, device, precision, self-check) and a row per
    artifact and batch: timings, the ratio to the first, the difference from the first's outputs — or `skipped`."""

    machine: dict[str, Any]
    seconds: float
    artifacts: list[dict[str, Any]]
    rows: list[dict[str, Any]]

    def backend_of(self, label: str) -> str:
        return next(a["backend"] for a in self.artifacts if a["label"] == label)

    def as_record(self) -> dict[str, Any]:
        return {"machine": self.machine, "seconds": self.seconds, "artifacts": self.artifacts, "results": self.rows}

    def markdown(self, title: str = "Runtime sessions") -> str:
        sized = any("size" in row for row in self.rows)
        lines = [f"## {title} (`onebyone bench`)", "",
                 f"Throughput ratios are relative to the first artifact, each the median of per-round pairs. "
                 f"CPU: {this_cpu().describe()}.", "",
                 "| artifact | backend | " + ("H×W | " if sized else "") + "batch | median ms | p90 ms | p99 ms | "
                 "samples/s | × first | rel. diff vs first |",
                 "|---|---|" + ("---:|" if sized else "") + "---:|---:|---:|---:|---:|---:|---:|"]
        for row in self.rows:
            if "skipped" not in row:
                size = f"{row.get('size', '')} | " if sized else ""
                lines.append(f"| {row['artifact']} | {self.backend_of(row['artifact'])} | {size}{row['batch']} | "
                             f"{row['median_ms']:.2f} | {row['p90_ms']:.2f} | {row['p99_ms']:.2f} | "
                             f"{row['throughput']:.1f} | {row['vs_first']:.2f}× | {row['max_rel_diff_vs_first']:.1e} |")
        return "\n".join(lines) + "\n"


def bench(artifacts: Sequence[str], options: BenchOptions) -> BenchResult:
    """Open every artifact and time them side by side; write the JSON/Markdown files `options` names."""
    labels = list(options.labels or artifacts)
    if len(labels) != len(artifacts) or len(set(labels)) != len(labels):
        raise UserError(f"{option('labels')}: give {len(artifacts)} distinct names, one per artifact")
    backends = list(options.backends) * len(artifacts) if len(options.backends) == 1 else list(options.backends)
    if len(backends) != len(artifacts):
        raise UserError(f"{option('backends')}: give one backend, or {len(artifacts)}, one per artifact")
    sessions: dict[str, Session] = {}
    try:
        for label, artifact, backend in zip(labels, artifacts, backends, strict=True):
            sessions[label] = open_session(artifact, backend, providers=options.providers,
                                           self_check=options.self_check)
        names = {tuple((s.name, s.shape[1:]) for s in session.inputs) for session in sessions.values()}
        if len(names) > 1:
            raise UserError("the artifacts take different inputs, so they cannot be fed the same batch: "
                            + "; ".join(f"{k}: {[s.describe() for s in v.inputs]}" for k, v in sessions.items()))
        result = BenchResult(machine(), options.seconds, [
            {"label": label, "target": str(artifact), "backend": s.backend, "device": s.device,
             "precision": s.model.precision, "described": s.describe(), "self_check": s.self_check_note}
            for (label, s), artifact in zip(sessions.items(), artifacts, strict=True)],
            _time(sessions, options.batches, options.seconds, list(options.sizes)))
    finally:
        for session in sessions.values():
            session.close()
    if options.json is not None:
        with atomic_write(options.json) as tmp:
            tmp.write_text(json.dumps(result.as_record(), indent=2) + "\n")
    if options.markdown is not None:
        with atomic_write(options.markdown) as tmp:
            tmp.write_text(result.markdown(options.title))
    return result


def _feed(session: Session, batch: int, size: tuple[int, int] | None) -> dict[str, np.ndarray]:
    """The bundle's golden inputs repeated to `batch` (real data where the model has some, e.g. digits), else
    standard-normal inputs from a fixed seed; resized to H×W `size` when one is given."""
    target = session.target
    golden_path = target.bundle / target.manifest.golden_of(target.record_name) if target.bundle is not None else None
    if golden_path is not None and golden_path.is_file():
        golden = Golden.load(golden_path).inputs
        feed = {name: np.resize(value, (batch, *value.shape[1:])) for name, value in golden.items()}
    else:
        rng = np.random.default_rng(INPUT_SEED + batch)
        feed = {}
        for spec in session.inputs:
            if DYNAMIC in spec.shape[1:] and size is None:
                raise UserError(f"{session.target.label} takes any H×W; say which to time at with "
                                f"{option('sizes', 'HxW,...')}")
            shape = [batch if axis == 0 and dim == DYNAMIC else dim for axis, dim in enumerate(spec.shape)]
            shape[2:] = size if size is not None and DYNAMIC in spec.shape[2:] else shape[2:]
            feed[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feed if size is None else {name: value if value.shape[2:] == size else resized(value, size)
                                      for name, value in feed.items()}


def _accepts(session: Session, feed: dict[str, np.ndarray]) -> bool:
    batch = len(next(iter(feed.values())))
    fixed = {spec.shape[0] for spec in session.inputs if spec.shape and spec.shape[0] != DYNAMIC}
    upper = session.batch_range.maximum
    sized = all(len(spec.shape) == feed[spec.name].ndim and all(
        dim in (DYNAMIC, got) for dim, got in zip(spec.shape[1:], feed[spec.name].shape[1:], strict=True))
        for spec in session.inputs)
    return (sized and session.accepts({name: value.shape for name, value in feed.items()}) and
            (not fixed or fixed == {batch}) and session.batch_range.minimum <= batch
            and (upper is None or batch <= upper))


def _difference(reference: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> dict[str, float | None]:
    """Max |diff| relative to max |reference| over all outputs, and top-1 agreement of class scores."""
    metrics = measure(reference, outputs, None)
    return {"max_rel_diff_vs_first": metrics.max_rel, "top1_agreement_vs_first": metrics.top1_agreement}


def _time(sessions: dict[str, Session], batches: Sequence[int], seconds: float,
          sizes: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """Per input size and batch size: every session that accepts it, timed interleaved against the first (module
    docstring)."""
    rows: list[dict[str, Any]] = []
    first_label, first = next(iter(sessions.items()))
    for size, batch in [(size, batch) for size in (sizes or [None]) for batch in batches]:
        feed = _feed(first, batch, size)
        shown = {"size": "x".join(map(str, size))} if size is not None else {}
        runnable = {label: s for label, s in sessions.items() if _accepts(s, feed)}
        rows.extend({"artifact": label, "batch": batch, **shown, "skipped": "shape outside what the artifact accepts"}
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
            rows.append({"artifact": label, **shown, **timing.as_record(),
                         "vs_first": timing.speedup_over(timings[first_label]),
                         **_difference(outputs[first_label], outputs[label])})
    return rows
