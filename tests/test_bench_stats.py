"""The benchmark's statistics: percentiles, throughput and paired speed-ups, against numpy computed here."""

from __future__ import annotations

import numpy as np

from onebyone.runtime.core.timing import Timing


def test_timing_statistics_and_paired_speedup(rng):
    baseline_ms = rng.uniform(10, 20, 51)
    load = rng.uniform(1, 3, 51)  # interference shared by both candidates in a round
    baseline = Timing(batch=8, latencies_ms=list(baseline_ms * load))
    faster = Timing(batch=8, latencies_ms=list(baseline_ms * load / 1.25))
    assert abs(faster.speedup_over(baseline) - 1.25) < 1e-12  # the shared load cancels exactly
    record = baseline.as_record()
    assert record["median_ms"] == np.median(baseline_ms * load) and record["runs"] == 51
    assert record["p99_ms"] == np.percentile(baseline_ms * load, 99)
    assert record["throughput"] == 8 * 1000 / record["median_ms"]
