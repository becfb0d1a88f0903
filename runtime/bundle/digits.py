"""scikit-learn's bundled 8x8 handwritten digits, split once: 20% held-out test, then 180 images for INT8
calibration, the rest for training (stratified by label, fixed seed). Real labelled data without a download."""

from __future__ import annotations

import dataclasses

import numpy as np

from onebyone.runtime.bundle.preprocess import Preprocess

PREPROCESS = Preprocess(resize=8, crop=8, mean=(0.5,), std=(0.5,), mode="L")
SPLIT_SEED = 0
TEST_FRACTION = 0.2
CALIB_SIZE = 180


@dataclasses.dataclass(frozen=True)
class Split:
    """Normalized images (N, 1, 8, 8) float32, labels (N,) int64, and their row numbers in sklearn's dataset."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


def digits_splits() -> dict[str, Split]:
    """The fixed train / calib / test split of sklearn's digits, stratified by label."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    pixels = (data.images / 16.0).astype(np.float32)[:, None]  # ink intensity in [0, 1]
    images = ((pixels - PREPROCESS.mean[0]) / PREPROCESS.std[0]).astype(np.float32)
    labels = data.target.astype(np.int64)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED)
    train, calib = train_test_split(rest, test_size=CALIB_SIZE, stratify=labels[rest], random_state=SPLIT_SEED)
    return {name: Split(images[idx], labels[idx], idx) for name, idx in (("train", train), ("calib", calib),
                                                                      ("test", test))}
