"""Timing side by side: candidates run interleaved, round by round, so drift in the machine affects all equally."""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.progress import progress


@dataclasses.dataclass(frozen=True)
class Timing:
    """Latencies of one candidate at one batch size, in milliseconds, in the order of the rounds."""

    batch: int
    latencies_ms: list[float]

    @property
    def median_ms(self) -> float:
        return float(np.median(self.latencies_ms))

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch * 1000.0 / self.median_ms

    def speedup_over(self, baseline: Timing) -> float:
        """Throughput relative to `baseline`: the median over rounds of baseline latency / this latency, each pair
        measured back to back in one round, so load that comes and goes cancels out of the ratio."""
        return float(np.median(np.array(baseline.latencies_ms) / np.array(self.latencies_ms)))

    def as_record(self) -> dict[str, float | int]:
        return {"batch": self.batch, "runs": len(self.latencies_ms), "median_ms": self.median_ms,
                "p90_ms": self.percentile_ms(90), "p99_ms": self.percentile_ms(99), "throughput": self.throughput}


def time_interleaved(runners: dict[str, Callable[[], object]], batch: int, rounds: int, warmup: int = 2,
                     label: str = "timing") -> dict[str, Timing]:
    """Call every runner `warmup` times, then `rounds` rounds of one call each in turn; a Timing per runner."""
    latencies: dict[str, list[float]] = {name: [] for name in runners}
    with progress() as bar:
        task = bar.add_task(f"{label} (batch {batch})", total=(warmup + rounds) * len(runners))
        for round_index in range(warmup + rounds):
            for name, run in runners.items():
                started = time.perf_counter()
                run()
                elapsed = time.perf_counter() - started
                if round_index >= warmup:
                    latencies[name].append(elapsed * 1000.0)
                bar.advance(task)
    return {name: Timing(batch, values) for name, values in latencies.items()}


def machine() -> dict[str, Any]:
    """What the numbers were measured on: the CPU by name, class and instruction sets (runtime/core/cpu.py)."""
    cpu = this_cpu()
    return {"platform": platform.platform(), "processor": cpu.describe(), "cpu": cpu.as_record(),
            "cpus": os.cpu_count() or 0, "python": platform.python_version()}
