"""One way to run any artifact: `onebyone.open(target)` → a Session with input/output specs and `run(inputs)`.

    import onebyone
    with onebyone.open("build/digits_resnet/model.opt.int8-ort.onnx") as session:   # self-checked on open
        logits = session.run({"input": x})["logits"]

Backends: `torch` (a zoo name, package.module:factory [+ weights], or a bundle's own model: the reference),
`onnxruntime` (TensorRT EP, CUDA EP or CPU: the best available unless `providers` says otherwise) and `tensorrt`
(a `.plan` from `onebyone build`; GPU only). `backend="auto"` picks by target: a name → torch, `.onnx` or a bundle
directory → onnxruntime, `.plan` → tensorrt.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.errors import UserError
from onebyone.runtime.golden import Parity
from onebyone.runtime.locate import ModelDescription, Target, locate
from onebyone.runtime.tensors import BatchRange, TensorSpec, prepare_inputs, select_outputs

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")


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


def open(target: str | Path, backend: str = "auto", *, providers: Sequence[str] | None = None,
         weights: Path | None = None, input_shape: tuple[int, int, int] | None = None,
         self_check: bool = True) -> Session:
    """Open `target` (an .onnx, a .plan, a bundle directory, a zoo name or package.module:factory).

    `providers` (onnxruntime only): e.g. ["cuda", "cpu"]; default: the best available. `weights`/`input_shape`:
    for a torch factory. With `self_check`, a target that belongs to a bundle is run on the bundle's golden
    inputs and refused (SelfCheckFailed, with the measured error) when it is out of its recorded tolerance.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    located = locate(target, backend, weights)
    if providers is not None and located.kind != "onnx":
        raise UserError("providers apply to ONNX files run by onnxruntime only")
    if (weights is not None or input_shape is not None) and located.kind != "torch":
        raise UserError("weights and input_shape apply to torch models only; an exported artifact has its own")
    if self_check:
        from onebyone.runtime.self_check import check_recorded_file

        check_recorded_file(located)
    session = _construct(located, providers, input_shape)
    if self_check:
        from onebyone.runtime.self_check import check_session

        try:
            check_session(session)
        except BaseException:
            session.close()
            raise
    return session


def _construct(located: Target, providers: Sequence[str] | None,
               input_shape: tuple[int, int, int] | None) -> Session:
    if located.kind == "torch":
        from onebyone.runtime.backends.torch_backend import TorchSession

        return TorchSession(located, input_shape)
    if located.kind == "onnx":
        from onebyone.runtime.backends.onnxruntime_backend import OnnxRuntimeSession

        return OnnxRuntimeSession(located, providers)
    from onebyone.runtime.backends.tensorrt_backend import TensorRTSession

    return TensorRTSession(located)
