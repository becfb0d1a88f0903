"""Class labels: the names of a classification or segmentation model's classes, in class order.

They travel in the manifest (`model.labels`) and the ONNX metadata (`onebyone.labels`, a JSON list), so a served
artifact answers Triton's classification extension as "value:index:label". On disk they use Triton's label file
format: one label per line, line i naming class i (`label_filename` in a model configuration).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onebyone.runtime.core.errors import UserError

LABEL_FILENAME = "labels.txt"  # beside config.pbtxt in a Triton model directory


def read_labels(path: Path) -> tuple[str, ...]:
    """The labels of a label file (trailing blank lines ignored)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read the labels file {path}: {err}") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise UserError(f"{path} has no labels; give one class label per line")
    return tuple(line.strip() for line in lines)


def label_file_text(labels: Sequence[str]) -> str:
    return "".join(f"{label}\n" for label in labels)


def check_labels(labels: Sequence[str], task: str, output_shape: Sequence[int], origin: str) -> None:
    """Labels fit a model whose class scores have `output_shape` (N × classes, or N × classes × H × W for
    segmentation): one per class."""
    if (task, len(output_shape)) not in (("classification", 2), ("segmentation", 4)):
        raise UserError(f"class labels apply to classification (N × classes) and segmentation (N × classes × H × W) "
                        f"scores; {origin} gives {task} outputs of shape {list(output_shape)}")
    if len(labels) != output_shape[1]:
        raise UserError(f"{len(labels)} labels for {output_shape[1]} classes: give one label per class ({origin})")
