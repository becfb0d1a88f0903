"""Streaming calibration statistics equal the statistics of all samples at once, and the ranges follow from them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from onebyone.optimize.precision.histogram import BINS, TensorStatistics, _bin_counts
from onebyone.optimize.precision.ranges import amax, amax_entropy, divergences


def streamed(batches: list[np.ndarray]) -> TensorStatistics:
    stats = TensorStatistics()
    for batch in batches:
        stats.update(batch)
    return stats


def bin_counts(magnitudes: np.ndarray, top: float) -> np.ndarray:
    """The histogram of all `magnitudes` at once, to hold the streamed one to."""
    return _bin_counts(torch.from_numpy(np.ascontiguousarray(magnitudes).reshape(-1)), top)


def test_streaming_histogram_equals_the_histogram_of_all_samples(rng):
    batches = [rng.normal(0, scale, (4, 16, 5, 5)) for scale in (0.5, 3.0, 0.1, 40.0, 7.0)]  # the range grows twice
    stats = streamed(batches)
    everything = np.concatenate([b.ravel() for b in batches])
    assert stats.top >= np.abs(everything).max() > stats.top / 2
    np.testing.assert_array_equal(stats.counts, bin_counts(np.abs(everything), stats.top))  # merging is exact
    numpy_counts, _ = np.histogram(np.abs(everything), bins=BINS, range=(0, stats.top))
    assert np.abs(stats.counts - numpy_counts).sum() <= 4  # numpy's edges may round a value into the next bin
    assert (stats.minimum, stats.maximum) == (everything.min(), everything.max())
    assert stats.samples == everything.size


def test_memory_does_not_grow_with_samples(rng):
    stats = streamed([rng.normal(0, 1, (8, 64, 7, 7))])
    size = stats.counts.nbytes
    for scale in rng.uniform(0.1, 50, 40):
        stats.update(rng.normal(0, scale, (8, 64, 7, 7)))
    assert stats.counts.nbytes == size == BINS * 8 and stats.samples == 41 * 8 * 64 * 49


def test_non_finite_activations_are_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        TensorStatistics().update(np.array([1.0, np.nan]))


def test_minmax_and_percentile_against_numpy(rng):
    values = rng.standard_t(3, 200_000)
    stats = streamed(np.array_split(values, 7))
    assert amax(stats, "minmax") == np.abs(values).max()
    for percentile in (90.0, 99.0, 99.99):
        exact = np.percentile(np.abs(values), percentile)
        assert abs(amax(stats, "percentile", percentile) - exact) <= stats.bin_width


def reference_divergences(counts: np.ndarray, levels: int) -> list[float]:
    """The calibrator's loop as published (pytorch-quantization's `_compute_amax_entropy`), one bin at a time."""
    counts = counts.astype(np.float64).copy()
    counts[0] = counts[1]
    curve = []
    for i in range(levels, len(counts) + 1):
        space = np.linspace(0, i, num=levels + 1)
        digitized = np.digitize(range(i), space) - 1
        digitized[counts[:i] == 0] = -1
        totals = np.zeros(levels)
        for j, level in enumerate(digitized):
            if level != -1:
                totals[level] += counts[j]
        members = Counter(digitized)
        quantized = np.array([totals[level] / members[level] if level != -1 else 0.0 for level in digitized])
        reference = counts[:i].copy()
        reference[-1] += counts[i:].sum()
        p, q = reference / reference.sum(), quantized / quantized.sum()
        support = p > 0
        curve.append(np.inf if (q[support] == 0).any() else float(np.sum(p[support] * np.log(p[support] / q[support]))))
    return curve


def test_entropy_matches_the_published_loop(rng):
    stats = streamed([np.maximum(rng.normal(0.3, 1, 50_000), 0), rng.laplace(0, 2, 20_000)])  # Relu-like + tails
    expected = reference_divergences(stats.counts, levels=128)
    np.testing.assert_allclose(divergences(stats.counts), expected, rtol=1e-9)
    chosen = 128 + len(expected) - 1 - int(np.argmin(expected[::-1]))
    assert amax_entropy(stats) == min(chosen * stats.bin_width, amax(stats, "minmax"))


def test_entropy_clips_heavy_tails_and_keeps_uniform_data(rng):
    # Clipped at ±1000 so the core spans more than one of the 2048 bins: one outlier beyond 4096 (about 1 seed in 30)
    # puts the whole core into bin 0, which the method replaces by bin 1 (as for a Relu's zeros), and the search
    # then keeps the outlier — a limit of the 2048-bin histogram that TensorRT's calibrator shares.
    heavy = streamed(np.array_split(np.clip(rng.standard_t(2, 500_000), -1000, 1000), 5))
    assert amax(heavy, "entropy") < 0.2 * amax(heavy, "minmax")
    uniform = streamed([rng.uniform(-5, 5, 400_000)])
    assert abs(amax(uniform, "entropy") - amax(uniform, "minmax")) <= uniform.bin_width


def test_entropy_ignores_rare_outliers_of_a_gaussian(rng):
    """20 outliers at |x| ≈ 40–60 among 500,000 N(0, 1) samples: the threshold stays near the Gaussian's bulk
    (P(|x| > 6) ≈ 2e-9), well inside the observed range."""
    outliers = rng.choice([-1.0, 1.0], 20) * rng.uniform(40, 60, 20)
    stats = streamed([rng.standard_normal(500_000), outliers])
    assert 3.0 < amax(stats, "entropy") < 6.0 < 40.0 <= amax(stats, "minmax")


def test_entropy_of_discrete_levels_keeps_the_top_level(rng):
    """Values on the 17 levels k/8, |k| ≤ 8 (like the digits input): every threshold below the top level folds
    mass into a bin that is empty or under-weighted in Q (KL > 0, or ∞ where Q is 0), and the full range
    reproduces P exactly (KL = 0), so the top level is chosen — and no candidate may turn into NaN."""
    stats = streamed([rng.integers(-8, 9, 20_000) / 8])
    with np.errstate(all="raise"):
        assert amax(stats, "entropy") == amax(stats, "minmax") == 1.0
