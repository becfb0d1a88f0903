"""The Session every backend implements: input/output specs, `run(inputs)`, the self-check result, `close()`."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from onebyone.runtime.bundle.tensors import BatchRange, TensorSpec, prepare_inputs, select_outputs
from onebyone.runtime.parity.metrics import Parity
from onebyone.runtime.sessions.target import ModelDescription, Target


class Session(abc.ABC):
    """A loaded model. `run` validates inputs (names, dtype, rank, shape, batch range, NaN/Inf) before running."""

    backend: str = ""

    def __init__(self, target: Target, inputs: list[TensorSpec], outputs: list[TensorSpec],
                 model: ModelDescription, device: str, batch_range: BatchRange | None = None) -> None:
        self.target = target
        self.inputs = inputs
        self.outputs = outputs
        self.model = model
        self.device = device  # where it runs: "CPUExecutionProvider", "NVIDIA H200 (compute 9.0)", "torch cpu", ...
        self.batch_range = batch_range or BatchRange()
        self.self_check: Parity | None = None  # set by open() when the target carries golden samples
        self.self_check_note = "not checked"

    def run(self, inputs: Mapping[str, Any] | Any, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Run a batch. `inputs`: name → numpy array or torch tensor (or one bare array for a one-input model).
        Returns the requested outputs (all by default) as numpy arrays, by name."""
        feeds = prepare_inputs(self.inputs, inputs, self.batch_range)
        return self._run(feeds, select_outputs(self.outputs, list(outputs) if outputs is not None else None))

    def run_batched(self, inputs: Mapping[str, np.ndarray], batch: int | None = None) -> dict[str, np.ndarray]:
        """Run many samples in chunks of at most `batch` (and at most what the session accepts, e.g. an engine's
        max batch); the outputs are concatenated."""
        count = len(next(iter(inputs.values())))
        step = min(count, batch or count, self.batch_range.maximum or count)
        chunks = [self.run({k: v[start:start + step] for k, v in inputs.items()}) for start in range(0, count, step)]
        return {name: np.concatenate([chunk[name] for chunk in chunks]) for name in chunks[0]}

    def accepts(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        """Whether the session runs inputs of these shapes (a TensorRT engine: within one of its profiles)."""
        return True

    @abc.abstractmethod
    def _run(self, feeds: dict[str, Any], output_names: list[str]) -> dict[str, np.ndarray]:
        """Run validated inputs; return the named outputs."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the session holds (device memory, streams); the session is unusable afterwards."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return f"{self.target.label} on {self.backend} ({self.device})"
