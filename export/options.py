"""What `onebyone export` can be asked for: the exporters, the default opset, the options of one export."""

from __future__ import annotations

import dataclasses

EXPORTERS = ("torchscript", "dynamo")
DEFAULT_OPSET = 18  # parsed by TensorRT 10 and 11, ONNX Runtime >= 1.14 and the onnxscript rewriter


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    batch: int | None = None  # None: dynamic batch dimension named "batch"
    opset: int = DEFAULT_OPSET
    keep_batchnorm: bool = False
    exporter: str = "torchscript"
    input_name: str = "input"
