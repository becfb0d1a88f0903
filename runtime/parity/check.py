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
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.parity.metrics import Parity, check_golden

MAX_BATCH = 32  # samples per run when the model takes any batch (bounds activation memory)


@dataclasses.dataclass(frozen=True)
class Engine:
    """What runs a file other than ONNX Runtime's reference session: the engine of an artifact whose precision is
    its setting (bf16: OpenVINO), or a configuration a file meets outside onebyone, with its defaults. `open` turns
    a file into a run; `tolerance`, when set, is the least a consumer that computes in another precision by default
    (OpenVINO's bf16 on BF16 CPUs) is held to: the wider of it and the artifact's row applies. A consumer that is not
    `binding` for the file has its verdict recorded and shown, but a failure does not fail the check (OpenVINO on an
    INT8 file, whose engine the kernel check chooses: docs/parity.md)."""

    name: str
    open: Callable[[Path], Run]  # opens an ONNX file, returns how to run inputs through it
    description: str = ""
    tolerance: Tolerance | None = None
    binding: bool = True


@dataclasses.dataclass(frozen=True)
class ArtifactCheck:
    """The golden check of the file as written (ONNX Runtime, nothing fused), and the same check in each stock
    configuration a consumer runs it in (`consumers`: consumer name → parity; `described`: name → description)."""

    parity: Parity
    accuracy: float | None  # top-1 (or mIoU) on the bundle's labelled data, when it has some
    metric: str = "top-1"  # what `accuracy` is: LabelledSet.metric
    consumers: dict[str, Parity] = dataclasses.field(default_factory=dict)
    described: dict[str, str] = dataclasses.field(default_factory=dict)
    advisory: frozenset[str] = frozenset()  # consumers whose failure is shown, not counted (Engine.binding)

    @property
    def ok(self) -> bool:
        return self.parity.ok and all(p.ok for name, p in self.consumers.items() if name not in self.advisory)

    def describe(self) -> str:
        accuracy = f"  {self.metric} {self.accuracy:.2%}" if self.accuracy is not None else ""
        failed = [f"{'note: ' if name in self.advisory else ''}{self.described[name]} computes something else: "
                  f"{parity.describe()}" for name, parity in self.consumers.items() if not parity.ok]
        return self.parity.describe() + accuracy + ("; " + "; ".join(failed) if failed else "")

    def as_record(self) -> dict[str, Any]:
        """The parity (and accuracy) measured, each stock configuration's, and the CPU they were measured on."""
        return (self.parity.as_record() | ({"accuracy": self.accuracy} if self.accuracy is not None else {})
                | {"stock": {name: parity.as_record() for name, parity in self.consumers.items()}}
                | {"cpu": this_cpu().as_record()})


def _plain_ort(level: str) -> Callable[[Path], Run]:
    def open_file(path: Path) -> Run:
        session = ort_session(path, level, plain=True)
        return lambda feeds: run_session(session, feeds)

    return open_file


# The configurations a file meets outside onebyone: a plain ONNX Runtime session (a path and no options), and
# Triton's onnxruntime backend, whose `optimization { graph { level } }` picks among these (onnxruntime_backend
# src/onnxruntime.cc: unset → all, -1 → basic, 1 → extended, 2 → none, which is the file as written).
STOCK_ONNXRUNTIME = (
    Engine("onnxruntime basic", _plain_ort("basic"),
           "stock ONNX Runtime (level basic: Triton's optimization.graph.level -1)"),
    Engine("onnxruntime extended", _plain_ort("extended"),
           "stock ONNX Runtime (level extended: Triton's optimization.graph.level 1)"),
    Engine("onnxruntime all", _plain_ort("all"),
           "stock ONNX Runtime (level all: a plain InferenceSession, Triton's default)"),
)


def check_artifact(onnx_path: Path, golden: Golden, tolerance: Tolerance, labelled: LabelledSet | None = None,
                   engine: Engine | None = None, consumers: tuple[Engine, ...] = ()) -> ArtifactCheck:
    """Run golden inputs (and labelled inputs) through one ORT reference session — or through `engine`, for an
    artifact whose precision is an engine's setting (bf16: OpenVINO) — and measure both; then the golden check in
    every stock ONNX Runtime configuration (not for an engine's artifact) and in `consumers`."""
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
    every = (*(STOCK_ONNXRUNTIME if engine is None else ()), *consumers)
    accuracy = labelled.accuracy(labelled_outputs[output_name]) if labelled_outputs is not None else None
    return ArtifactCheck(parity=parity, accuracy=accuracy, metric=labelled.metric if labelled else "top-1",
                         consumers={c.name: check_golden(golden, c.open(onnx_path), _wider(tolerance, c.tolerance))
                                    for c in every},
                         described={c.name: c.description for c in every},
                         advisory=frozenset(c.name for c in every if not c.binding))


def _wider(own: Tolerance, least: Tolerance | None) -> Tolerance:
    return least if least is not None and least.max_rel > own.max_rel else own


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
