"""Checking one ONNX artifact of a bundle: parity with the golden torch outputs, and accuracy on labelled data."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.bundle.golden import Golden, Run, reference_session, run_session
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.tolerances import Tolerance
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.parity.metrics import Parity, check_golden

MAX_BATCH = 32  # samples per run when the model takes any batch (bounds activation memory)


@dataclasses.dataclass(frozen=True)
class Engine:
    """An engine other than ONNX Runtime's reference session to check an artifact with."""

    name: str
    open: Callable[[Path], Run]  # opens an ONNX file, returns how to run inputs through it


@dataclasses.dataclass(frozen=True)
class ArtifactCheck:
    parity: Parity
    accuracy: float | None  # top-1 (or mIoU) on the bundle's labelled data, when it has some
    metric: str = "top-1"  # what `accuracy` is: LabelledSet.metric

    @property
    def ok(self) -> bool:
        return self.parity.ok

    def describe(self) -> str:
        accuracy = f"  {self.metric} {self.accuracy:.2%}" if self.accuracy is not None else ""
        return self.parity.describe() + accuracy

    def as_record(self) -> dict[str, Any]:
        """The parity (and accuracy) measured, and the CPU it was measured on."""
        return (self.parity.as_record() | ({"accuracy": self.accuracy} if self.accuracy is not None else {})
                | {"cpu": this_cpu().as_record()})


def check_artifact(onnx_path: Path, golden: Golden, tolerance: Tolerance, labelled: LabelledSet | None = None,
                   engine: Engine | None = None) -> ArtifactCheck:
    """Run golden inputs (and labelled inputs) through one ORT reference session — or through `engine`, for an
    artifact whose precision is an engine's setting (bf16: OpenVINO) — and measure both."""
    input_name, output_name = next(iter(golden.inputs)), next(iter(golden.outputs))
    if engine is not None:
        run = engine.open(onnx_path)
        labelled_outputs = run({input_name: labelled.inputs}) if labelled is not None else None
    else:
        session = reference_session(onnx_path)

        def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return run_session(session, feeds)

        labelled_outputs = run_in_batches(session, input_name, labelled.inputs) if labelled is not None else None
    parity = check_golden(golden, run, tolerance)
    accuracy = labelled.accuracy(labelled_outputs[output_name]) if labelled_outputs is not None else None
    return ArtifactCheck(parity=parity, accuracy=accuracy, metric=labelled.metric if labelled else "top-1")


def run_in_batches(session: object, input_name: str, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run many samples through an ONNX Runtime session in chunks of at most MAX_BATCH; a fixed-batch model gets
    chunks of its batch, the last one zero-padded (the padding's outputs are dropped)."""
    fixed = next(i.shape[0] for i in session.get_inputs() if i.name == input_name)
    batch = fixed if isinstance(fixed, int) else MAX_BATCH
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, len(inputs), batch):
        chunk = inputs[start:start + batch]
        padded = (chunk if not isinstance(fixed, int)
                  else np.concatenate([chunk, np.zeros((batch - len(chunk), *chunk.shape[1:]), chunk.dtype)]))
        chunks.append({k: v[:len(chunk)] for k, v in run_session(session, {input_name: padded}).items()})
    return {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
