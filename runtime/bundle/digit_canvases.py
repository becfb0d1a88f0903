"""A segmentation task with real labels and no download: sklearn's 8x8 digits (the fixed splits of digits.py) placed
at random on a larger canvas, with a per-pixel class mask — background 0, digit d → d + 1 on its inked pixels."""

from __future__ import annotations

import numpy as np

from onebyone.runtime.bundle.digits import PREPROCESS, digits_splits

CANVAS = (32, 32)  # H×W of the canvases digits_segmenter is trained and exported at
CLASSES = 11  # background + 10 digits
INK = 0.25  # a pixel belongs to its digit when its ink intensity (0..1) is at least this
DIGITS_PER_CANVAS = (1, 3)  # at least, at most
TEST_CANVASES = 256
CALIB_CANVASES = 128
SEED = 0
BACKGROUND = (0.0 - PREPROCESS.mean[0]) / PREPROCESS.std[0]  # no ink, normalised


def canvases(split: str, count: int, size: tuple[int, int] = CANVAS,
             seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """`count` canvases (N, 1, H, W) float32 normalised like the digits, and their masks (N, H, W) int64: 1–3 digits
    of `split` ("train", "calib", "test") each, at random positions that do not overlap."""
    digits = digits_splits()[split]
    rng = np.random.default_rng([seed, count, *size])
    images = np.full((count, 1, *size), BACKGROUND, dtype=np.float32)
    masks = np.zeros((count, *size), dtype=np.int64)
    for n in range(count):
        taken: list[tuple[int, int]] = []
        for _ in range(rng.integers(DIGITS_PER_CANVAS[0], DIGITS_PER_CANVAS[1] + 1)):
            for _attempt in range(20):
                y, x = int(rng.integers(0, size[0] - 7)), int(rng.integers(0, size[1] - 7))
                if all(abs(y - ty) >= 8 or abs(x - tx) >= 8 for ty, tx in taken):
                    break
            else:
                continue
            taken.append((y, x))
            pick = int(rng.integers(len(digits.labels)))
            image = digits.images[pick, 0]
            images[n, 0, y:y + 8, x:x + 8] = image
            ink = image * PREPROCESS.std[0] + PREPROCESS.mean[0] >= INK
            masks[n, y:y + 8, x:x + 8][ink] = digits.labels[pick] + 1
    return images, masks
