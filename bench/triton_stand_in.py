"""Triton's onnxruntime and openvino backends as Python-based backends, for a tritonserver build that lacks them (the
PyPI wheel's): `bench/tritonserver.py` copies this file as `backends/onnxruntime/model.py` and
`backends/openvino/model.py`. Each builds its session from the model's config as the real backend's C++ does, not
as onebyone would, so a repository `onebyone triton-repo` writes is computed here as Triton would compute it:

- onnxruntime (triton-inference-server/onnxruntime_backend src/onnxruntime.cc, commit 00fd3e87): graph
  optimization level from `optimization.graph.level` (unset: ORT_ENABLE_ALL, -1: basic, 1: extended, 2: disabled),
  `execution_mode`, `intra_op_thread_count` and `inter_op_thread_count` from `parameters`; CPU execution provider
  (GPU execution accelerators are refused: this tritonserver has no GPU); nothing else set.
- openvino (triton-inference-server/openvino_backend src/openvino.cc, commit db193042): `read_model`, then
  `compile_model` on CPU with only the properties the config's `parameters` give (INFERENCE_NUM_THREADS,
  COMPILATION_NUM_THREADS, HINT_BF16, NUM_STREAMS, PERFORMANCE_HINT): OpenVINO's defaults otherwise, bf16
  inference precision included on CPUs with BF16 instructions.

Tensors cross through DLPack via torch, as in onebyone's own Python-backend model (runtime/serve/triton_python.py).
This module imports nothing from onebyone.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack

ORT_LEVELS = {-1: "ORT_ENABLE_BASIC", 1: "ORT_ENABLE_EXTENDED", 2: "ORT_DISABLE_ALL"}  # anything else: ALL
OPENVINO_PARAMETERS = ("INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16", "NUM_STREAMS",
                       "PERFORMANCE_HINT")


def _parameters(config: dict) -> dict[str, str]:
    return {key: value["string_value"] for key, value in config.get("parameters", {}).items()}


Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def onnxruntime_session(path: str, config: dict) -> Run:
    """An ONNX Runtime session configured as Triton's onnxruntime backend configures it; returns run(feeds)."""
    import onnxruntime as ort

    accelerators = config.get("optimization", {}).get("execution_accelerators", {})
    if accelerators.get("gpu_execution_accelerator"):
        raise pb_utils.TritonModelException("GPU execution accelerators need a GPU Triton")
    options = ort.SessionOptions()
    level = int(config.get("optimization", {}).get("graph", {}).get("level", 0))
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS.get(level, "ORT_ENABLE_ALL"))
    parameters = _parameters(config)
    mode = int(parameters.get("execution_mode", 0))
    options.execution_mode = ort.ExecutionMode.ORT_PARALLEL if mode == 1 else ort.ExecutionMode.ORT_SEQUENTIAL
    if int(parameters.get("intra_op_thread_count", 0)) > 0:
        options.intra_op_num_threads = int(parameters["intra_op_thread_count"])
    if int(parameters.get("inter_op_thread_count", 0)) > 0:
        options.inter_op_num_threads = int(parameters["inter_op_thread_count"])
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return lambda feeds: dict(zip(names, session.run(names, feeds), strict=True))


def openvino_session(path: str, config: dict) -> Run:
    """An OpenVINO compiled model made as Triton's openvino backend makes it; returns run(feeds)."""
    import openvino

    parameters = _parameters(config)
    properties: dict[str, Any] = {}
    for key in OPENVINO_PARAMETERS:
        if key not in parameters:
            continue
        value = parameters[key]
        if key == "HINT_BF16":
            properties["INFERENCE_PRECISION_HINT"] = "bf16"
        elif key in ("INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS"):
            properties[key] = int(value)
        else:
            properties[key] = value.upper()
    core = openvino.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", properties)
    names = [port.get_any_name() for port in compiled.outputs]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = compiled.create_infer_request().infer(feeds).to_tuple()
        return {name: np.array(value) for name, value in zip(names, values, strict=True)}

    return run


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        folder = os.path.join(args["model_repository"], args["model_version"])
        path = os.path.join(folder, config.get("default_model_filename") or "model.onnx")
        make = {"onnxruntime": onnxruntime_session, "openvino": openvino_session}[config["backend"]]
        self.run = make(path, config)
        self.inputs = [spec["name"] for spec in config["input"]]
        self.outputs = [spec["name"] for spec in config["output"]]
        self.batching = config.get("max_batch_size", 0) > 0

    def execute(self, requests: list) -> list:
        feeds = [{name: from_dlpack(pb_utils.get_input_tensor_by_name(request, name).to_dlpack()).numpy()
                  for name in self.inputs} for request in requests]
        if not self.batching:
            return [self._respond(self.run(feed)) for feed in feeds]
        sizes = [len(feed[self.inputs[0]]) for feed in feeds]
        merged = self.run({name: np.concatenate([feed[name] for feed in feeds]) for name in self.inputs})
        bounds = np.cumsum([0, *sizes])
        return [self._respond({name: merged[name][start:stop] for name in self.outputs})
                for start, stop in itertools.pairwise(bounds)]

    def _respond(self, result: dict[str, np.ndarray]) -> Any:
        return pb_utils.InferenceResponse([
            pb_utils.Tensor.from_dlpack(name, to_dlpack(torch.from_numpy(np.ascontiguousarray(result[name]))))
            for name in self.outputs])
