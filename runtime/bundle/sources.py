"""The one place data comes from: calibration (`quantize --calib`) and parity (`parity --data`) read the same
sources, streamed batch by batch.

- `digits-calibration`: sklearn's digits, the 180-image calibration split (with labels);
- `digits-test`: sklearn's digits, the 360-image held-out test split (with labels), disjoint from calibration;
- `digits`: the split the command has always meant — calibration for `quantize`, test for `parity`;
- `random`: N(0, 1) from a fixed seed; a smoke test, never a calibration;
- an image folder, read with the model's preprocessing: labelled when it has a labels.tsv, one subfolder per class
  or synset-named files, and `FOLDER:calibration` / `FOLDER:evaluation` for a labels.tsv folder's fixed split
  (runtime/bundle/image_folders.py);
- a .npy (N, C, H, W), read batch by batch with plain file reads;
- a .npz with the input's name, `inputs`, or one array; and optional `labels`.

Every source yields float32 batches (B, C, H, W) checked against the model's input (shape, finite); none holds
more than one batch at a time (a .npz member is read whole, so prefer .npy for large sets).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.image_folders import Decoder, labelled_images, split_spec
from onebyone.runtime.bundle.preprocess import IMAGE_SUFFIXES, Preprocess
from onebyone.runtime.core.errors import UserError

RANDOM_SEED = 0
SOURCES_HELP = ("digits-calibration, digits-test, canvases-calibration, canvases-test (digits_segmenter's), random "
                "(smoke test only), an image folder (labelled by its "
                "labels.tsv, class subfolders or synset names; FOLDER:calibration|evaluation for a labels.tsv split), "
                "or a .npy/.npz (a .npz may hold `labels`)")
DIGITS_SPLITS = {"digits-calibration": "calib", "digits-test": "test"}
CANVAS_SPLITS = {"canvases-calibration": ("calib", 128), "canvases-test": ("test", 256)}  # digit_canvases.py


@dataclasses.dataclass(frozen=True)
class DataSource:
    """`count` samples, delivered in batches by `read(start, stop)`; `description` says what they are; `labels`
    (one per sample) where the source has them."""

    description: str
    count: int
    read: Callable[[int, int], np.ndarray]
    labels: np.ndarray | None = None
    smoke_only: bool = False

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for start in range(0, self.count, batch_size):
            yield self.read(start, min(start + batch_size, self.count))

    def all(self) -> np.ndarray:
        """Every sample in one array (for data small enough to hold, as parity's)."""
        return self.read(0, self.count)

    def at_sizes(self, sizes: list[tuple[int, int]]) -> DataSource:
        """The same samples, batch k resized (bilinear) to H×W `sizes[k % len(sizes)]`: statistics of a model
        that takes any resolution, streamed over every size it is checked at."""
        from onebyone.runtime.bundle.preprocess import resized

        def read(start: int, stop: int) -> np.ndarray:
            batch = self.read(start, stop)
            size = sizes[(start // max(stop - start, 1)) % len(sizes)]
            return batch if batch.shape[2:] == size else resized(batch, size)

        listed = ", ".join(f"{h}x{w}" for h, w in sizes)
        return dataclasses.replace(self, read=read, description=f"{self.description}, batches at {listed} in turn")

    @classmethod
    def of_arrays(cls, description: str, inputs: np.ndarray, labels: np.ndarray | None) -> DataSource:
        return cls(description, len(inputs), lambda start, stop: inputs[start:stop], labels=labels)


def open_source(spec: str, sample_shape: tuple[int | None, ...], preprocess: Preprocess | None,
                samples: int | None, input_name: str, *, digits: str = "digits-calibration",
                random_samples: int = 64, nominal: tuple[int, ...] | None = None) -> DataSource:
    """The source named by `spec`, limited to `samples` (all when None), its samples checked to be `sample_shape`
    (C, H, W; None where the model's dimension is dynamic). `digits` is the source plain `digits` stands for, and
    `random_samples` the size of `random` when `samples` is None; `random` samples of a model with dynamic
    dimensions take them from `nominal` (the export's own C, H, W)."""
    shape = tuple(own if dim is None else dim for dim, own in zip(sample_shape, nominal, strict=True)) if (
        nominal and len(nominal) == len(sample_shape)) else sample_shape
    data = _open(digits if spec == "digits" else spec, shape if spec == "random" else sample_shape, preprocess,
                 input_name, samples or random_samples)
    if data.count == 0:
        raise UserError(f"data source {spec} holds no samples")
    if samples is not None and samples < data.count:
        data = dataclasses.replace(data, count=samples, description=f"the first {samples} of {data.description}",
                                   labels=None if data.labels is None else data.labels[:samples])
    return _checked(data, sample_shape)


def _open(spec: str, sample_shape: tuple[int | None, ...], preprocess: Preprocess | None, input_name: str,
          random_samples: int) -> DataSource:
    if spec in DIGITS_SPLITS:
        from onebyone.runtime.bundle.digits import digits_splits

        split = digits_splits()[DIGITS_SPLITS[spec]]
        size = len(split.labels)
        name = (f"calibration split ({size} images, disjoint from test)" if spec == "digits-calibration"
                else f"held-out test split ({size} images)")
        return DataSource.of_arrays(f"sklearn digits, {name}", split.images, split.labels)
    if spec in CANVAS_SPLITS:
        from onebyone.runtime.bundle.digit_canvases import canvases

        split, count = CANVAS_SPLITS[spec]
        images, masks = canvases(split, count)
        return DataSource.of_arrays(f"digit canvases from the {split} split of sklearn digits ({count}, per-pixel "
                                    "masks)", images, masks)
    if spec == "random":
        return _random(sample_shape, random_samples)
    path, split = split_spec(spec)
    if path.is_dir():
        return _image_folder(path, split, preprocess)
    if path.suffix == ".npy" and path.is_file():
        return _npy(path)
    if path.suffix == ".npz" and path.is_file():
        return _npz(path, input_name)
    if path.exists():
        raise UserError(f"data source {spec} is neither a folder nor a .npy/.npz file; use {SOURCES_HELP}")
    raise UserError(f"unknown data source {spec!r} (no such file or folder); use {SOURCES_HELP}")


def _random(sample_shape: tuple[int | None, ...], count: int) -> DataSource:
    if any(dim is None for dim in sample_shape):
        raise UserError("`random` needs a model with a fixed input shape (C, H, W); pass real data")

    def read(start: int, stop: int) -> np.ndarray:
        rng = np.random.default_rng([RANDOM_SEED, start])
        return rng.standard_normal((stop - start, *sample_shape), dtype=np.float32)

    return DataSource(f"{count} random N(0,1) inputs, seed {RANDOM_SEED} — a smoke test, NOT a calibration: ranges "
                      "will not fit real data", count, read, smoke_only=True)


def _image_folder(folder: Path, split: str | None, preprocess: Preprocess | None) -> DataSource:
    """Images of a folder, labelled when its layout says how (runtime/bundle/image_folders.py), decoded with the
    model's preprocessing on a thread pool."""
    labelled = labelled_images(folder, split)
    files = labelled.files if labelled is not None else sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} images")
    if preprocess is None:
        raise UserError("the model carries no preprocessing metadata, so images cannot be turned into inputs; "
                        "preprocess them yourself into a .npy (N, C, H, W) and pass that")
    description = labelled.description if labelled is not None else f"{len(files)} images from {folder}"
    return DataSource(description, len(files), Decoder(files, preprocess),
                      labels=labelled.labels if labelled is not None else None)


def _npz(path: Path, input_name: str) -> DataSource:
    """The inputs (named like the model's input, `inputs`, or the only array) and optional `labels` of a .npz."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    with archive:
        names = archive.files
        key = next((k for k in (input_name, "inputs") if k in names), names[0] if len(names) == 1 else None)
        if key is None:
            raise UserError(f"{path} holds arrays {names}; name the inputs {input_name!r} or 'inputs'")
        inputs, labels = archive[key], archive["labels"] if "labels" in names else None
    if labels is not None and len(labels) != len(inputs):
        raise UserError(f"{path} has {len(inputs)} inputs but {len(labels)} labels; they must pair up")
    return dataclasses.replace(_array(inputs, str(path)), labels=labels)


def _npy(path: Path) -> DataSource:
    """A .npy read batch by batch with plain file reads: a memory map would keep every page it touched resident,
    so memory would grow with the samples read."""
    try:
        with path.open("rb") as stream:
            major, _ = np.lib.format.read_magic(stream)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran_order, dtype = read_header(stream)
            offset = stream.tell()
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    _check_float(dtype, str(path))
    if fortran_order or not shape:
        raise UserError(f"{path} must hold a C-ordered N×C×H×W array")
    sample_items = int(np.prod(shape[1:], dtype=np.int64))

    def read(start: int, stop: int) -> np.ndarray:
        with path.open("rb") as stream:
            stream.seek(offset + start * sample_items * dtype.itemsize)
            values = np.fromfile(stream, dtype=dtype, count=(stop - start) * sample_items)
        return values.reshape(stop - start, *shape[1:]).astype(np.float32, copy=False)

    return DataSource(f"{shape[0]} samples from {path}", shape[0], read)


def _check_float(dtype: np.dtype, origin: str) -> None:
    if not np.issubdtype(dtype, np.floating):
        raise UserError(f"{origin} holds {dtype} data; onebyone needs model-ready float inputs "
                        "(preprocessed and normalised, N×C×H×W)")


def _array(array: np.ndarray, origin: str) -> DataSource:
    _check_float(array.dtype, origin)
    return DataSource(f"{len(array)} samples from {origin}", len(array),
                      lambda start, stop: np.ascontiguousarray(array[start:stop], dtype=np.float32))


def _checked(data: DataSource, sample_shape: tuple[int | None, ...]) -> DataSource:
    """Wrap `read` so every batch is checked: (B, C, H, W) matching the model, finite."""

    def read(start: int, stop: int) -> np.ndarray:
        batch = data.read(start, stop)
        shape = tuple(batch.shape[1:])
        expected = "×".join("?" if d is None else str(d) for d in sample_shape)
        if len(shape) != len(sample_shape):
            raise UserError(f"samples have shape {'×'.join(map(str, shape))}; the model takes "
                            f"{expected} per sample")
        if sample_shape and sample_shape[0] is not None and shape[0] != sample_shape[0]:
            raise UserError(f"samples have {shape[0]} channels; the model takes {sample_shape[0]} "
                            f"({expected} per sample)")
        if any(want is not None and got != want for got, want in zip(shape, sample_shape, strict=True)):
            raise UserError(f"samples have shape {'×'.join(map(str, shape))}; the model takes "
                            f"{expected} per sample")
        if not np.isfinite(batch).all():
            raise UserError(f"samples {start}…{stop - 1} contain NaN or Inf")
        return batch

    return dataclasses.replace(data, read=read)
