"""Streaming per-tensor activation statistics whose memory does not grow with the number of samples."""

from __future__ import annotations

import dataclasses

import numpy as np

BINS = 2048


@dataclasses.dataclass
class TensorStatistics:
    """min, max and a histogram of |x| over [0, top) in BINS equal bins, accumulated batch by batch.

    `top` is a power of two above every |x| seen. When a batch reaches it, the range doubles until the batch fits
    and adjacent bin pairs merge (new bin i = old bins 2i and 2i+1). Scaling by powers of two is exact in floating
    point, so the result is exactly the histogram of all samples seen, binned over the final range.
    """

    minimum: float = np.inf
    maximum: float = -np.inf
    top: float = 0.0
    counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(BINS, dtype=np.int64))

    def update(self, batch: np.ndarray) -> None:
        values = np.asarray(batch).ravel()
        if values.size == 0:
            return
        low, high = float(values.min()), float(values.max())
        if not (np.isfinite(low) and np.isfinite(high)):  # NaN propagates through min/max
            raise ValueError("non-finite activation values")
        self.minimum = min(self.minimum, low)
        self.maximum = max(self.maximum, high)
        magnitudes = np.abs(values)
        largest = max(-low, high)
        if self.top == 0.0:
            self.top = 2.0 ** np.ceil(np.log2(largest)) if largest > 0 else 1.0
        while largest >= self.top:
            self._double()
        self.counts += bin_counts(magnitudes, self.top)

    def _double(self) -> None:
        merged = self.counts.reshape(BINS // 2, 2).sum(axis=1)
        self.counts = np.concatenate([merged, np.zeros(BINS // 2, dtype=np.int64)])
        self.top *= 2

    @property
    def bin_width(self) -> float:
        return self.top / BINS

    @property
    def samples(self) -> int:
        return int(self.counts.sum())


def bin_counts(magnitudes: np.ndarray, top: float) -> np.ndarray:
    """Counts of `magnitudes` (all in [0, top)) in BINS equal bins. BINS/top is a power of two, so the scaling is
    exact in the magnitudes' own precision (float32 activations need no float64 copy)."""
    index = np.minimum((magnitudes * (BINS / top)).astype(np.int64), BINS - 1)
    return np.bincount(index, minlength=BINS)
