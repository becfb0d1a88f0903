"""Per-model statistics in Triton's terms — one record that `/v2/models/stats` (Triton's statistics extension) and
`/metrics` (Prometheus, Triton's metric names) both read, so they always agree.

Per request (`inference_stats`): `success`/`fail` count requests and their whole duration, receipt to response;
`queue` the wait before the model run the request joined; `compute_input` parsing and checking the request;
`compute_infer` the model run it was part of; `compute_output` encoding the response. Per model run
(`batch_stats`, by batch size): `compute_infer`, the run itself. `inference_count` counts samples of successful
requests, `execution_count` model runs; `last_inference` is the end of the last success, in ms since the epoch.

Failures are also counted by Triton's reasons (`nv_inference_request_failure{reason=...}`): REJECTED — refused by
the queue bound or given up by the request's timeout; BACKEND — the model run raised; OTHER — a request refused
before any run (malformed, or not matching the model). CANCELED (a client cancelling a request in flight) never
happens here: a request whose client went away still runs and is counted as answered. Triton does not count a
request its core refuses before scheduling; onebyone counts it under OTHER, so failures here are a superset.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

BATCH_PHASES = ("compute_input", "compute_infer", "compute_output")
FAILURE_REASONS = ("REJECTED", "CANCELED", "BACKEND", "OTHER")  # Triton's `reason` label values


@dataclasses.dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += max(ns, 0)


@dataclasses.dataclass(frozen=True)
class RequestTimes:
    """Where one successful request's time went, in ns (see the module docstring)."""

    total: int
    queue: int
    compute_input: int
    compute_infer: int
    compute_output: int


@dataclasses.dataclass
class ModelStatistics:
    success: Duration = dataclasses.field(default_factory=Duration)
    fail: Duration = dataclasses.field(default_factory=Duration)
    queue: Duration = dataclasses.field(default_factory=Duration)
    compute_input: Duration = dataclasses.field(default_factory=Duration)
    compute_infer: Duration = dataclasses.field(default_factory=Duration)
    compute_output: Duration = dataclasses.field(default_factory=Duration)
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    runs: dict[int, dict[str, Duration]] = dataclasses.field(default_factory=dict)  # batch size → phase → Duration
    failures: dict[str, int] = dataclasses.field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))

    def record_run(self, batch_size: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        """A model run of `batch_size` samples: forming the batch, the run, splitting its outputs."""
        self.execution_count += 1
        phases = self.runs.setdefault(batch_size, {p: Duration() for p in BATCH_PHASES})
        for phase, ns in zip(BATCH_PHASES, (input_ns, infer_ns, output_ns), strict=True):
            phases[phase].add(ns)

    def record_success(self, samples: int, times: RequestTimes) -> None:
        self.success.add(times.total)
        self.queue.add(times.queue)
        self.compute_input.add(times.compute_input)
        self.compute_infer.add(times.compute_infer)
        self.compute_output.add(times.compute_output)
        self.inference_count += samples
        self.last_inference_ms = time.time_ns() // 1_000_000

    def record_failure(self, ns: int, reason: str) -> None:
        """A failed request that took `ns`, for one of FAILURE_REASONS."""
        self.fail.add(ns)
        self.failures[reason] += 1

    def as_triton(self, name: str, version: str) -> dict[str, Any]:
        """One entry of `model_stats`, field for field as Triton's `ModelStatistics` message (JSON form)."""
        phases = ("success", "fail", "queue", *BATCH_PHASES)
        return {"name": name, "version": version, "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count, "execution_count": self.execution_count,
                "inference_stats": {phase: dataclasses.asdict(getattr(self, phase)) for phase in phases},
                "batch_stats": [{"batch_size": size} | {p: dataclasses.asdict(d) for p, d in run.items()}
                                for size, run in sorted(self.runs.items())]}
