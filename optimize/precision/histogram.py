"""Streaming per-tensor activation statistics whose memory does not grow with the number of samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

BINS = 2048
HISTC_CHUNK = 1 << 24  # float32 counts are exact integers up to 2^24


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
        values = torch.from_numpy(np.ascontiguousarray(batch).reshape(-1))
        if values.numel() == 0:
            return
        low, high = (float(v) for v in torch.aminmax(values))
        if not (np.isfinite(low) and np.isfinite(high)):  # NaN propagates through min/max
            raise ValueError("non-finite activation values")
        self.minimum = min(self.minimum, low)
        self.maximum = max(self.maximum, high)
        largest = max(-low, high)
        if self.top == 0.0:
            self.top = 2.0 ** np.ceil(np.log2(largest)) if largest > 0 else 1.0
        while largest >= self.top:
            self._double()
        self.counts += _bin_counts(values.abs(), self.top)

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


def _bin_counts(magnitudes: torch.Tensor, top: float) -> np.ndarray:
    """torch.histc bins x at floor(x / top · BINS): top and BINS are powers of two, so both steps are exact in the
    values' own precision, and it is faster than numpy's bincount. Its float32 counts are exact up to 2^24, so
    it counts chunks of at most that many values."""
    counts = np.zeros(BINS, dtype=np.int64)
    for chunk in torch.split(magnitudes, HISTC_CHUNK):
        counts += torch.histc(chunk, bins=BINS, min=0.0, max=top).numpy().astype(np.int64)
    return counts
