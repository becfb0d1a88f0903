"""Sessions fed from files and outputs kept in files: images (preprocessed as the model records) and model-ready
.npy arrays stacked into batches of equal shape (a model with a dynamic H×W takes several sizes, one batch each),
outputs saved as .npy/.npz, class scores turned into top-k with softmax probabilities, per-pixel scores into the
share of each class (`onebyone infer`)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.accuracy import top_k
from onebyone.runtime.bundle.preprocess import IMAGE_SUFFIXES, load_image
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.sessions.base import Session


def load_inputs(paths: list[Path], session: Session) -> list[tuple[np.ndarray, list[str]]]:
    """Batches from image and .npy files, one per sample shape in order of first appearance, each with a label per
    sample."""
    arrays: list[np.ndarray] = []
    labels: list[str] = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"input {path} does not exist")
        if path.suffix.lower() in IMAGE_SUFFIXES:
            if session.model.preprocess is None:
                raise UserError(f"{session.target.label} records no preprocessing, so images cannot be fed to it; "
                                "pass a model-ready .npy instead")
            arrays.append(load_image(path, session.model.preprocess)[None])
            labels.append(path.name)
        elif path.suffix.lower() == ".npy":
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as err:
                raise UserError(f"cannot read {path}: {err}") from None
            rank = len(session.inputs[0].shape)
            array = array[None] if array.ndim == rank - 1 else array
            arrays.append(array)
            labels.extend([path.name] if len(array) == 1 else [f"{path.name}[{i}]" for i in range(len(array))])
        else:
            raise UserError(f"input {path}: expected {', '.join(IMAGE_SUFFIXES)} or .npy")
    groups: dict[tuple[int, ...], tuple[list[np.ndarray], list[str]]] = {}
    start = 0
    for array in arrays:
        batch, names = groups.setdefault(array.shape[1:], ([], []))
        batch.append(array)
        names.extend(labels[start:start + len(array)])
        start += len(array)
    return [(np.concatenate(batch), names) for batch, names in groups.values()]


def class_shares(scores: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per sample of per-pixel class scores (N × classes × H × W): (class, share of pixels) for the k classes that
    cover most pixels, largest first."""
    shares = []
    for predicted in scores.argmax(axis=1):
        counts = np.bincount(predicted.ravel(), minlength=scores.shape[1]) / predicted.size
        shares.append([(int(c), float(counts[c])) for c in np.argsort(-counts, kind="stable")[:k] if counts[c]])
    return shares


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def top_classes(scores: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
    """Per row: (class, softmax probability) for the k highest scores, best first."""
    probabilities = softmax(scores.astype(np.float64))
    return [[(int(c), float(probabilities[row, c])) for c in classes]
            for row, classes in enumerate(top_k(scores, k))]


def save_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    """The outputs in the format `path`'s suffix names: .npy (one output, the array) or .npz (every output by name,
    one output included)."""
    buffer = io.BytesIO()
    if path.suffix == ".npy":
        np.save(buffer, next(iter(outputs.values())))
    else:
        np.savez(buffer, **outputs)
    with atomic_write(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
