"""Calibration methods: the amax (largest magnitude kept) of a tensor from its streamed statistics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onebyone.optimize.precision.histogram import TensorStatistics

INT8_LEVELS = 128  # levels of a symmetric INT8 magnitude: 0…127, and the sign
METHODS = ("minmax", "percentile", "entropy")
DEFAULT_METHOD = "percentile"
DEFAULT_PERCENTILE = 99.99  # at 99.99: measured on real ImageNet images, docs/precision.md says why


def amax_minmax(stats: TensorStatistics) -> float:
    """max |x| seen."""
    return max(abs(stats.minimum), abs(stats.maximum))


def amax_percentile(stats: TensorStatistics, percentile: float) -> float:
    """The upper edge of the first bin at which the cumulative share of |x| reaches `percentile` %."""
    cumulative = np.cumsum(stats.counts)
    index = int(np.searchsorted(cumulative, cumulative[-1] * percentile / 100.0))
    return min((index + 1) * stats.bin_width, amax_minmax(stats))


def amax_entropy(stats: TensorStatistics, levels: int = INT8_LEVELS) -> float:
    """TensorRT's entropy calibration (Migacz, GTC 2017): the threshold of i bins minimising `divergences`
    (the last minimum when several tie), amax = i · bin width."""
    curve = divergences(stats.counts, levels)
    best = levels + len(curve) - 1 - int(np.argmin(curve[::-1]))
    return min(best * stats.bin_width, amax_minmax(stats))


def divergences(histogram: np.ndarray, levels: int = INT8_LEVELS) -> np.ndarray:
    """KL(P‖Q) for each candidate threshold of i = levels … len(histogram) bins: P is the first i bins with
    everything beyond folded into bin i−1; Q is those i bins (without the fold) quantized to `levels` levels, each
    level's count spread evenly over its non-empty bins. Bin 0 takes bin 1's count first: the zeros of a Relu would
    otherwise dominate every candidate alike."""
    counts = histogram.astype(np.float64)
    counts[0] = counts[1]
    curve = np.empty(len(counts) - levels + 1)
    for i in range(levels, len(counts) + 1):
        reference = counts[:i].copy()
        reference[-1] += counts[i:].sum()
        level = (np.arange(i) * levels) // i  # which of the `levels` levels bin j falls in
        nonempty = counts[:i] > 0
        level_totals = np.bincount(level, weights=counts[:i], minlength=levels)
        level_bins = np.bincount(level, weights=nonempty, minlength=levels)
        quantized = np.where(nonempty, level_totals[level] / np.maximum(level_bins[level], 1), 0.0)
        curve[i - levels] = kl_divergence(reference, quantized)
    return curve


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """KL(p‖q) of two non-negative count vectors after normalising each; inf where q = 0 but p > 0."""
    if q.sum() == 0:
        return float("inf")
    p, q = p / p.sum(), q / q.sum()
    support = p > 0
    if (q[support] == 0).any():
        return float("inf")
    return float(np.sum(p[support] * np.log(p[support] / q[support])))


def amax(stats: TensorStatistics, method: str, percentile: float = 99.99) -> float:
    if method == "minmax":
        return amax_minmax(stats)
    if method == "percentile":
        return amax_percentile(stats, percentile)
    if method == "entropy":
        return amax_entropy(stats)
    raise ValueError(f"unknown calibration method {method!r}; valid: {', '.join(METHODS)}")
