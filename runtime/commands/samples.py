"""Sample images for trying a model: held-out sklearn digits written as 8×8 grayscale PNGs.

    python -m onebyone.runtime.commands.samples OUT_DIR [--count N]

File names carry the true label (`digit-003-label-7.png`) so `onebyone infer`'s answer can be checked by eye. The
pixels are the digit's 0..16 ink levels scaled to 0..255; reading one back with the model's preprocessing gives the
test-split input to within 1/510.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.digits import PREPROCESS, digits_splits
from onebyone.runtime.core.files import atomic_write


def write_digit_images(folder: Path, count: int) -> list[Path]:
    """The first `count` images of the held-out test split as PNGs in `folder`."""
    from PIL import Image

    test = digits_splits()["test"]
    ink = test.images[:count, 0] * PREPROCESS.std[0] + PREPROCESS.mean[0]  # back to [0, 1]
    paths = []
    for number, (pixels, label) in enumerate(zip(ink, test.labels[:count], strict=True)):
        path = folder / f"digit-{number:03d}-label-{label}.png"
        with atomic_write(path) as tmp:
            Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L").save(tmp, format="PNG")
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=8)
    args = parser.parse_args()
    for path in write_digit_images(args.folder, args.count):
        print(path)


if __name__ == "__main__":
    main()
