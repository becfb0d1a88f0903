"""digits_segmenter: a small fully convolutional bottleneck net trained to segment digit canvases
(runtime/bundle/digit_canvases.py): real per-pixel labels, a real mIoU, any input resolution.

The body is digits_resnet's (three Bottleneck stages on a 3x3 stem, strides 1, 2, 2); a 1x1 classifier on the
stride-1 map and one on the stride-4 map, upsampled bilinearly to the input's H×W, are summed (FCN-style skip).
Training is deterministic for a given seed and torch build, takes about a minute on 2 cores, and is cached keyed by
the recipe, like digits_resnet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from onebyone.export.models.resnet import ResNet
from onebyone.export.models.trained import trained
from onebyone.runtime.bundle.accuracy import mean_iou
from onebyone.runtime.bundle.digit_canvases import CLASSES, TEST_CANVASES, canvases
from onebyone.runtime.core.progress import progress


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights; its hash keys the cache."""

    seed: int = 0
    epochs: int = 12
    canvases_per_epoch: int = 2048
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True) + torch.__version__
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class DigitsSegmenter(nn.Module):
    """scores = fine(layer1) + upsample(coarse(layer3)): N × 11 × H × W."""

    def __init__(self) -> None:
        super().__init__()
        self.body = ResNet([1, 1, 1], num_classes=None, in_channels=1, small_input=True, stage_planes=(16, 32, 64))
        self.fine = nn.Conv2d(64, CLASSES, 1)
        self.coarse = nn.Conv2d(256, CLASSES, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine, _, coarse = self.body.features(x)
        return self.fine(fine) + functional.interpolate(self.coarse(coarse), size=x.shape[-2:], mode="bilinear",
                                                        align_corners=False)


def train(recipe: Recipe) -> tuple[DigitsSegmenter, dict[str, float]]:
    """AdamW with a cosine schedule on fresh canvases each epoch, per-pixel cross-entropy."""
    torch.manual_seed(recipe.seed)
    model = DigitsSegmenter()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    steps = recipe.epochs * -(-recipe.canvases_per_epoch // recipe.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=steps)
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("training digits_segmenter", total=recipe.epochs)
        for epoch in range(recipe.epochs):
            model.train()
            images, masks = canvases("train", recipe.canvases_per_epoch, seed=recipe.seed * 1000 + epoch + 1)
            images, masks = torch.from_numpy(images), torch.from_numpy(masks)
            for start in range(0, len(masks), recipe.batch_size):
                loss = functional.cross_entropy(model(images[start:start + recipe.batch_size]),
                                                masks[start:start + recipe.batch_size])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            bar.advance(task)
    model.eval()
    images, masks = canvases("test", TEST_CANVASES)
    with torch.no_grad():
        scores = model(torch.from_numpy(images)).numpy()
    report = {"train_seconds": time.perf_counter() - started, "test_miou": mean_iou(scores, masks),
              "test_pixel_accuracy": float(np.mean(scores.argmax(1) == masks)), "test_canvases": TEST_CANVASES}
    return model, report


def trained_digits_segmenter(recipe: Recipe | None = None) -> DigitsSegmenter:
    """The trained model: loaded from the cache when its recipe matches, else trained now and cached."""
    return trained("digits_segmenter", recipe or Recipe(), DigitsSegmenter, train)
