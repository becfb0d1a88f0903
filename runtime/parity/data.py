"""The inputs parity runs on: `digits` (the held-out test split, with labels), `random` (N(0,1) from a fixed
seed), an image folder (read with the model's preprocessing, no labels), or a `.npz` with `inputs` (or the input's
name) and optional `labels`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.preprocess import IMAGE_SUFFIXES, Preprocess, load_image
from onebyone.runtime.bundle.tensors import TensorSpec
from onebyone.runtime.core.errors import UserError

RANDOM_SEED = 0
SOURCES = "digits, random, an image folder, or a .npz with 'inputs' (and optional 'labels')"


@dataclasses.dataclass(frozen=True)
class ParityData:
    inputs: np.ndarray
    labels: np.ndarray | None
    description: str


def _npz(path: Path, input_name: str) -> ParityData:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    key = next((k for k in (input_name, "inputs") if k in arrays), None)
    if key is None:
        raise UserError(f"{path} holds {sorted(arrays)}; name the inputs 'inputs' (or {input_name!r})")
    labels = arrays.get("labels")
    if labels is not None and len(labels) != len(arrays[key]):
        raise UserError(f"{path} has {len(arrays[key])} inputs but {len(labels)} labels; they must pair up")
    return ParityData(arrays[key], labels, f"{len(arrays[key])} samples from {path}")


def load(spec: str, spec_input: TensorSpec, preprocess: Preprocess | None, samples: int | None) -> ParityData:
    """The data named by `spec` for a model whose input is `spec_input`, limited to `samples`."""
    if spec == "digits":
        from onebyone.runtime.bundle.digits import digits_splits

        test = digits_splits()["test"]
        data = ParityData(test.images, test.labels, f"sklearn digits, held-out test split ({len(test.labels)} images)")
    elif spec == "random":
        count = samples or 16
        shape = spec_input.shape[1:]
        if any(d < 0 for d in shape):
            raise UserError("--data random needs a model with a fixed input shape; pass real data")
        inputs = np.random.default_rng(RANDOM_SEED).standard_normal((count, *shape)).astype(np.float32)
        data = ParityData(inputs, None, f"{count} N(0,1) samples, seed {RANDOM_SEED}")
    elif Path(spec).is_dir():
        files = sorted(p for p in Path(spec).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{spec} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        if preprocess is None:
            raise UserError("the reference records no preprocessing, so images cannot become inputs; pass a .npz")
        files = files[:samples] if samples else files
        images = np.stack([load_image(p, preprocess) for p in files])
        data = ParityData(images, None, f"{len(files)} images from {spec}")
    elif spec.endswith(".npz") and Path(spec).is_file():
        data = _npz(Path(spec), spec_input.name)
    else:
        raise UserError(f"unknown data source {spec!r}; use {SOURCES}")
    if samples is not None:
        data = dataclasses.replace(data, inputs=data.inputs[:samples],
                                  labels=None if data.labels is None else data.labels[:samples])
    return data
