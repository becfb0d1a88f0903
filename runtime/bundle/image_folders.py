"""Labelled image folders as a data source: which images, with which class index, decoded in a worker pool.

A folder is read in one of three layouts, the first that fits:
- `labels.tsv` in the folder (the shared ImageNet sample's layout): a header naming at least `index` and `file`,
  one row per image (file relative to the folder or to its `images/` subfolder), the class index in `index`;
- one subfolder per class (torchvision's ImageFolder): classes are the sorted subfolder names, 0, 1, …;
- ImageNet's synset-named files (`n01440764_*.JPEG`): classes are the sorted synsets present — the standard indices
  only when all 1,000 synsets are, which the description says.

`FOLDER:calibration` and `FOLDER:evaluation` choose a split of a `labels.tsv` folder: calibration is every image
whose class index is a multiple of 10, evaluation the others (the fixed split of onebyone's ImageNet sample, whose
README defines it). Images are decoded and preprocessed with the model's own preprocessing by a pool of threads
(Pillow releases the GIL while it decodes and resizes) that also reads the next batch ahead, so the thread running
the model is not the one decoding.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.preprocess import IMAGE_SUFFIXES, Preprocess, load_image
from onebyone.runtime.core.errors import UserError

LABELS_FILE = "labels.tsv"
SPLITS = ("calibration", "evaluation")
CALIBRATION_EVERY = 10  # calibration: class index % 10 == 0
SYNSET = re.compile(r"^(n\d{8})[_.]")
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclasses.dataclass(frozen=True)
class LabelledImages:
    """Image files in order, the class index of each, and what they are."""

    files: list[Path]
    labels: np.ndarray
    description: str


def split_spec(spec: str) -> tuple[Path, str | None]:
    """`FOLDER:split` → (FOLDER, split); anything else → (path, None)."""
    head, _, tail = spec.rpartition(":")
    if head and tail in SPLITS:
        return Path(head), tail
    return Path(spec), None


def labelled_images(folder: Path, split: str | None) -> LabelledImages | None:
    """The folder's images with their labels, or None when no layout with labels fits (plain images)."""
    if (folder / LABELS_FILE).is_file():
        return _from_tsv(folder, split)
    if split is not None:
        raise UserError(f"{folder}:{split}: a split needs a {LABELS_FILE} in the folder (index and file columns)")
    classes = sorted(p for p in folder.iterdir() if p.is_dir())
    if classes:
        files, labels = [], []
        for index, directory in enumerate(classes):
            found = _images(directory)
            files += found
            labels += [index] * len(found)
        return LabelledImages(files, np.asarray(labels, np.int64),
                              f"{len(files)} images in {len(classes)} class folders of {folder}")
    files = _images(folder)
    synsets = [SYNSET.match(p.name) for p in files]
    if files and all(synsets):
        names = sorted({m.group(1) for m in synsets})
        index = {name: i for i, name in enumerate(names)}
        note = "" if len(names) == 1000 else f"; {len(names)} synsets, not ImageNet's 1,000: indices are not standard"
        return LabelledImages(files, np.asarray([index[m.group(1)] for m in synsets], np.int64),
                              f"{len(files)} synset-named images from {folder}{note}")
    return None


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _from_tsv(folder: Path, split: str | None) -> LabelledImages:
    path = folder / LABELS_FILE
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    if not rows or not {"index", "file"} <= set(rows[0]):
        raise UserError(f"{path} needs a header with `index` and `file` columns (tab-separated)")
    try:
        labelled = [(int(row["index"]), row["file"]) for row in rows]
    except ValueError as err:
        raise UserError(f"{path}: a class index is not an integer ({err})") from None
    if split is not None:
        calibration = split == "calibration"
        labelled = [(i, f) for i, f in labelled if (i % CALIBRATION_EVERY == 0) == calibration]
    files = []
    for _, name in labelled:
        candidates = [folder / name, folder / "images" / name]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise UserError(f"{path} lists {name}, which is neither in {folder} nor in {folder / 'images'}")
        files.append(found)
    which = f"{split} split (class index % {CALIBRATION_EVERY} {'=' if split == 'calibration' else '≠'} 0)" \
        if split else "all"
    return LabelledImages(files, np.asarray([i for i, _ in labelled], np.int64),
                          f"{len(files)} labelled images from {folder}, {which}")


class Decoder:
    """Reads files[start:stop] as one preprocessed batch, decoding on a thread pool and the next batch of the same
    size ahead of time."""

    def __init__(self, files: list[Path], preprocess: Preprocess) -> None:
        self.files, self.preprocess = files, preprocess
        self.pool = concurrent.futures.ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="onebyone-decode")
        self.ahead: tuple[int, int, list[concurrent.futures.Future]] | None = None

    def _submit(self, start: int, stop: int) -> list[concurrent.futures.Future]:
        return [self.pool.submit(load_image, path, self.preprocess) for path in self.files[start:stop]]

    def __call__(self, start: int, stop: int) -> np.ndarray:
        if self.ahead is not None and self.ahead[:2] == (start, stop):
            futures = self.ahead[2]
        else:
            futures = self._submit(start, stop)
        following = (stop, min(len(self.files), 2 * stop - start))
        self.ahead = (*following, self._submit(*following)) if following[0] < following[1] else None
        return np.stack([future.result() for future in futures])
