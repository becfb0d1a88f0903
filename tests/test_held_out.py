"""Held-out samples for the quantize-time check (optimize/precision/held_out.py): the last samples of the data, never
among the calibrated ones, one batch of a fixed-batch model, none when the data is too small to spare them."""

from __future__ import annotations

import numpy as np
import pytest

from onebyone.optimize.precision.held_out import HELD_OUT, split_off
from onebyone.runtime.bundle.sources import DataSource


def numbered(count: int) -> DataSource:
    """Sample k is a 1×1×1 image holding k."""
    return DataSource.of_arrays("numbered", np.arange(count, dtype=np.float32).reshape(count, 1, 1, 1),
                                np.arange(count))


@pytest.mark.parametrize(("count", "wanted", "batch", "calibrated", "held"), [
    (100, None, None, 92, list(range(92, 100))),  # all but the held-out ones
    (100, 32, None, 32, list(range(92, 100))),  # the first 32; the last 8 held out
    (100, 100, None, 92, list(range(92, 100))),  # never more than the rest
    (100, None, 4, 96, list(range(96, 100))),  # a fixed batch of 4: one batch held out
    (15, None, None, 15, None),  # fewer than twice HELD_OUT: nothing held out, everything calibrates
    (15, 10, None, 10, None),
])
def test_the_last_samples_are_held_out_and_never_calibrated(count, wanted, batch, calibrated, held):
    split = split_off(numbered(count), wanted, batch)
    seen = split.calibration.all().ravel().tolist()
    assert seen == list(range(calibrated)) and split.calibration.count == calibrated
    if held is None:
        assert split.held_out is None
        return
    kept = split.held_out.all().ravel().tolist()
    assert kept == held and not set(kept) & set(seen)
    assert split.held_out.read(1, 3).ravel().tolist() == held[1:3], "batches read from the held-out range"
    assert "held out of the calibration" in split.held_out.description and HELD_OUT == 8
