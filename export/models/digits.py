"""digits_resnet: a small bottleneck ResNet trained on scikit-learn's bundled 8x8 handwritten digits.

Real labelled data without a download (1,797 images, 10 classes). The split is fixed: 20% test (held out), then
180 images for INT8 calibration, the rest for training. Training is deterministic for a given seed and torch
build, takes well under a minute on 2 cores, and is cached (see `runtime/core/cache.py`) keyed by the recipe.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import torch
from torch import nn

from onebyone.export.models.resnet import ResNet
from onebyone.export.models.trained import trained
from onebyone.runtime.bundle.digits import PREPROCESS, Split, digits_splits
from onebyone.runtime.core.progress import progress


@dataclasses.dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights; its hash keys the cache."""

    seed: int = 0
    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.05
    max_shift: int = 1  # random translation by up to this many pixels (augmentation)

    def key(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True) + torch.__version__
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_digits_resnet() -> ResNet:
    """Three stages of one Bottleneck each (64, 128, 256 channels out) on a 3x3 stem; 8x8 → 8x8 → 4x4 → 2x2."""
    return ResNet([1, 1, 1], num_classes=10, in_channels=1, small_input=True, stage_planes=(16, 32, 64))


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by a random (dy, dx) in [−max_shift, max_shift]², filling with background (no ink)."""
    background = (0.0 - PREPROCESS.mean[0]) / PREPROCESS.std[0]
    size = images.shape[-1]
    padded = nn.functional.pad(images, [max_shift] * 4, value=background)
    offsets = torch.randint(0, 2 * max_shift + 1, (len(images), 2), generator=generator)
    shifted = torch.empty_like(images)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            chosen = (offsets[:, 0] == dy) & (offsets[:, 1] == dx)
            shifted[chosen] = padded[chosen, :, dy:dy + size, dx:dx + size]
    return shifted


def accuracy(model: nn.Module, split: Split) -> float:
    """Top-1 accuracy of `model` (eval mode) on a split, from sklearn's labels."""
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(split.images)).argmax(1).numpy()
    return float(np.mean(predicted == split.labels))


def train(recipe: Recipe) -> tuple[ResNet, dict[str, float]]:
    """SGD with Nesterov momentum, one-cycle learning rate, label smoothing and random shifts."""
    splits = digits_splits()
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    model = build_digits_resnet()
    images, labels = torch.from_numpy(splits["train"].images), torch.from_numpy(splits["train"].labels)
    steps_per_epoch = -(-len(labels) // recipe.batch_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                                weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, epochs=recipe.epochs,
                                                   steps_per_epoch=steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)
    started = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("training digits_resnet", total=recipe.epochs)
        for _ in range(recipe.epochs):
            model.train()
            order = torch.randperm(len(labels), generator=generator)
            for start in range(0, len(labels), recipe.batch_size):
                batch = order[start:start + recipe.batch_size]
                loss = loss_fn(model(random_shift(images[batch], recipe.max_shift, generator)), labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            bar.advance(task)
    model.eval()
    report = {"train_seconds": time.perf_counter() - started, "test_accuracy": accuracy(model, splits["test"]),
              "test_samples": len(splits["test"].labels)}
    return model, report


def trained_digits_resnet(recipe: Recipe | None = None) -> ResNet:
    """The trained model: loaded from the cache when its recipe matches, else trained now and cached."""
    return trained("digits_resnet", recipe or Recipe(), build_digits_resnet, train)
