"""How raw pixels become a model's input tensor; stored in each ONNX file's metadata and the bundle manifest."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from onebyone.runtime.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """x = (pixels/255 after resizing the shorter side to `resize` and center-cropping `crop`) − mean) / std.

    `mode` is the PIL image mode the pixels are read in: "RGB" (3 channels) or "L" (grayscale, 1 channel).
    """

    resize: int
    crop: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    mode: str

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, raw: dict) -> Preprocess:
        return cls(resize=int(raw["resize"]), crop=int(raw["crop"]), mean=tuple(raw["mean"]), std=tuple(raw["std"]),
                   mode=str(raw["mode"]))


IMAGENET = Preprocess(resize=256, crop=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), mode="RGB")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def load_image(path: Path, preprocess: Preprocess) -> np.ndarray:
    """Read a PNG/JPEG as the model's input (C, H, W) float32: shorter side resized to `resize` (bilinear),
    centre crop `crop`, scaled to [0, 1], normalised per channel."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as raw:
            image = raw.convert(preprocess.mode)
    except (OSError, UnidentifiedImageError) as err:
        raise UserError(f"cannot read image {path}: {err}") from None
    width, height = image.size
    scale = preprocess.resize / min(width, height)
    image = image.resize((max(preprocess.crop, round(width * scale)), max(preprocess.crop, round(height * scale))),
                         Image.Resampling.BILINEAR)
    left, top = (image.size[0] - preprocess.crop) // 2, (image.size[1] - preprocess.crop) // 2
    image = image.crop((left, top, left + preprocess.crop, top + preprocess.crop))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    mean = np.asarray(preprocess.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(preprocess.std, dtype=np.float32)[:, None, None]
    return ((pixels - mean) / std).astype(np.float32)


def _bilinear_weights(source: int, target: int) -> np.ndarray:
    """(target × source) interpolation matrix of half-pixel bilinear resizing (torch's `align_corners=False`,
    ONNX Resize's `half_pixel` with edge clamping)."""
    position = np.clip((np.arange(target) + 0.5) * source / target - 0.5, 0, None)
    low = np.minimum(np.floor(position).astype(int), source - 1)
    high = np.minimum(low + 1, source - 1)
    fraction = position - low
    weights = np.zeros((target, source))
    np.add.at(weights, (np.arange(target), low), 1 - fraction)
    np.add.at(weights, (np.arange(target), high), fraction)
    return weights


def resized(batch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A model-ready batch (N, C, H, W) at another H×W, bilinear: the same samples for a model that takes any
    resolution (golden samples and calibration batches at every size it is checked at)."""
    rows, columns = _bilinear_weights(batch.shape[2], size[0]), _bilinear_weights(batch.shape[3], size[1])
    return np.ascontiguousarray(rows @ batch.astype(np.float64) @ columns.T, dtype=batch.dtype)
