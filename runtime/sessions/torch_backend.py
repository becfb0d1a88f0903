"""The torch reference as a session: a zoo model, package.module:factory (+ weights), or a bundle's own model."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from onebyone.export.weights import load_weights
from onebyone.export.zoo import instantiate, resolve
from onebyone.runtime.bundle.tensors import DYNAMIC, TensorSpec
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.engines import OpenOptions
from onebyone.runtime.sessions.target import ModelDescription, Target

INPUT_NAME = "input"  # the graph input name `onebyone export` gives by default


class TorchSession(Session):
    """Eager torch on the CPU, in eval mode under `torch.inference_mode`; dynamic batch."""

    backend = "torch"

    def __init__(self, target: Target, options: OpenOptions) -> None:
        manifest, input_shape = target.manifest, options.input_shape
        if input_shape is None and manifest is not None:
            input_shape = tuple(manifest.model.input_shape)  # type: ignore[assignment]
        spec = resolve(target.model or "", input_shape)
        self._model = instantiate(spec)
        if target.weights is not None:
            load_weights(self._model, target.weights)
        self._output_names = list(manifest.model.output_names) if manifest is not None else list(spec.output_names)
        input_name = manifest.model.input_name if manifest is not None else INPUT_NAME
        if manifest is not None and manifest.model.inputs and manifest.model.outputs:  # as exported: -1 where dynamic
            inputs = [TensorSpec(input_name, np.dtype(np.float32),
                                 (DYNAMIC, *manifest.model.inputs[0]["shape"][1:]))]
            outputs = [TensorSpec(record["name"], np.dtype(record["dtype"]), (DYNAMIC, *record["shape"][1:]))
                       for record in manifest.model.outputs]
        else:
            inputs = [TensorSpec(input_name, np.dtype(np.float32), (DYNAMIC, *spec.input_shape))]
            probe = self._forward(torch.zeros((1, *spec.input_shape)))  # output ranks and sizes
            outputs = [TensorSpec(name, np.dtype(np.float32), (DYNAMIC, *value.shape[1:]))
                       for name, value in probe.items()]
        description = ModelDescription(name=spec.name, task=spec.task, preprocess=spec.preprocess, precision="fp32",
                                       labels=spec.labels)
        super().__init__(target, inputs, outputs, description, f"torch {torch.__version__} cpu")

    def _forward(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            result = self._model(batch)
        result = result if isinstance(result, tuple | list) else (result,)
        if len(result) != len(self._output_names):
            raise UserError(f"the torch model returns {len(result)} outputs, expected {self._output_names}")
        return {name: value.numpy() for name, value in zip(self._output_names, result, strict=True)}

    def _run(self, feeds: dict[str, Any], output_names: list[str]) -> dict[str, np.ndarray]:
        (value,) = feeds.values()
        batch = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.from_numpy(value)
        outputs = self._forward(batch)
        return {name: outputs[name] for name in output_names}

    def close(self) -> None:
        self._model = None
