"""Zoo models trained here on bundled data (digits_resnet, digits_segmenter): trained once per recipe and cached
(`runtime/core/cache.py`), with a JSON report of the training beside the weights."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from onebyone.runtime.core.cache import cache_dir
from onebyone.runtime.core.files import atomic_write

Model = TypeVar("Model", bound=nn.Module)


def cached_files(name: str, recipe: Any) -> tuple[Path, Path]:
    """Where model `name`'s weights (.pth) and training report (.json: held-out score, seconds) for `recipe` (a
    dataclass with `key()`, the hash of everything that decides the weights) are cached."""
    stem = cache_dir() / name / f"weights-{recipe.key()}"
    return stem.with_suffix(".pth"), stem.with_suffix(".json")


def trained(name: str, recipe: Any, build: Callable[[], Model],
            train: Callable[[Any], tuple[Model, dict[str, Any]]]) -> Model:
    """The model: loaded from the cache when its recipe matches, else trained now and cached."""
    weights, report_path = cached_files(name, recipe)
    if weights.is_file():
        model = build()
        model.load_state_dict(torch.load(weights, weights_only=True))
        return model.eval()
    model, report = train(recipe)
    with atomic_write(weights) as tmp:
        torch.save(model.state_dict(), tmp)
    with atomic_write(report_path) as tmp:
        tmp.write_text(json.dumps(report | {"recipe": dataclasses.asdict(recipe)}, indent=2) + "\n")
    return model
