"""How raw pixels become a model's input tensor; stored in each ONNX file's metadata and the bundle manifest."""

from __future__ import annotations

import dataclasses
import json


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
