"""TensorRT: run a plan (`onebyone build` makes them, runtime/sessions/tensorrt_build.py). The only module in
onebyone that imports `tensorrt` (inside `import_tensorrt`, so importing this module needs no GPU); the build module
gets it from here.

API as in NVIDIA's TensorRT Python samples and the 10.x → 11.x migration guide.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.bundle.plan import (
    Profile,
    buffer_bytes,
    check_compatible,
    numpy_dtype,
    profile_for,
    profile_text,
    read_plan_info,
)
from onebyone.runtime.bundle.tensors import BatchRange, TensorSpec, is_torch_tensor
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.cuda_memory import NEEDS_GPU, CudaDevice
from onebyone.runtime.sessions.engines import OpenOptions
from onebyone.runtime.sessions.target import Target, describe_from_manifest, describe_from_metadata

TENSORRT_ALIGNMENT = 256  # bytes: TensorRT requires tensor addresses aligned to this


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise UserError(f"{NEEDS_GPU} (the tensorrt package is not installed)") from None
    return tensorrt


PRECISIONS = (("int8", "int8"), ("fp8", "fp8"), ("bf16", "bf16"), ("fp16", "fp16"), ("half", "fp16"),
              ("int32", "int32"), ("int64", "int64"), ("bool", "bool"), ("fp32", "fp32"), ("float", "fp32"))


def _precision(tensor: dict[str, Any]) -> str:
    """The datatype named in an engine inspector tensor's "Format/Datatype" ("Row major linear INT8 format", ...)."""
    text = str(tensor.get("Format/Datatype", "")).lower()
    return next((name for token, name in PRECISIONS if token in text), "?")


def describe_layers(information: dict[str, Any]) -> list[dict[str, Any]]:
    """Per layer of TensorRT's engine information (IEngineInspector, JSON): name, type, the precisions of its inputs
    and outputs, and the tactic. An engine built without detailed profiling lists names only."""
    rows = []
    for layer in information.get("Layers", []):
        if not isinstance(layer, dict):
            rows.append({"name": str(layer), "type": "?", "inputs": [], "outputs": [], "tactic": None})
            continue
        rows.append({"name": layer.get("Name", "?"), "type": layer.get("LayerType", "?"),
                     "inputs": [_precision(t) for t in layer.get("Inputs", [])],
                     "outputs": [_precision(t) for t in layer.get("Outputs", [])],
                     "tactic": layer.get("TacticName") or layer.get("TacticValue")})
    return rows


@functools.cache
def logger(trt: Any) -> Any:
    """One TensorRT logger for the process (TensorRT warns when builders and runtimes bring their own)."""
    return trt.Logger(trt.Logger.WARNING)


class TensorRTSession(Session):
    """A deserialized plan with one execution context and one CUDA stream. Device and pinned host buffers are
    allocated once, at the largest of the optimization profiles' maximum shapes, and reused; each run uses the first
    profile that contains its input shapes (a shape no profile contains is refused, naming the ranges); a torch CUDA
    tensor input of the engine's dtype is bound directly (zero copy)."""

    backend = "tensorrt"

    def __init__(self, target: Target, options: OpenOptions) -> None:
        plan = target.path
        info = read_plan_info(plan)
        trt = import_tensorrt()
        self.target = target  # named by the errors opening the engine can raise (Session.__init__ sets it again)
        self._device = CudaDevice()
        try:
            check_compatible(info, plan, trt.__version__, self._device.compute_capability, self._device.name)
            with self._device.active():
                self._open_engine(trt, plan, bool(info.options.get("version_compatible")))
        except BaseException:
            self._device.close()
            raise
        record = target.record
        description = (describe_from_manifest(target.manifest, record) if target.manifest is not None
                       else describe_from_metadata(plan.stem, info.metadata, info.precision))
        device = f"{self._device.name}, compute {self._device.compute_capability}, TensorRT {trt.__version__}"
        super().__init__(target, self._inputs, self._outputs, description, device, self._batch_range)

    def _open_engine(self, trt: Any, plan: Path, version_compatible: bool) -> None:
        self._trt = trt
        self._runtime = trt.Runtime(logger(trt))
        if version_compatible:  # the plan carries the lean runtime it runs on: host code TensorRT must allow
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(plan.read_bytes())
        if self._engine is None:
            raise UserError(f"TensorRT cannot deserialize {plan} (corrupted, or built by another TensorRT); "
                            "rebuild it with `onebyone build`")
        self._context = self._engine.create_execution_context()
        self._inputs: list[TensorSpec] = []
        self._outputs: list[TensorSpec] = []
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            spec = TensorSpec(name, numpy_dtype(self._engine.get_tensor_dtype(name).name, name),
                              tuple(self._engine.get_tensor_shape(name)))
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self._inputs if is_input else self._outputs).append(spec)
        self._stream = self._device.stream()
        self._profiles = [{spec.name: tuple(tuple(shape) for shape in
                                            self._engine.get_tensor_profile_shape(spec.name, index))
                           for spec in self._inputs}
                          for index in range(self._engine.num_optimization_profiles)]
        self._profile = 0
        largest: dict[str, int] = {}  # bytes per tensor: buffers fit every profile's maximum shapes
        for index, profile in enumerate(self._profiles):
            self._use_profile(index)
            for spec in self._inputs:
                self._set_input_shape(spec.name, profile[spec.name][2])
                largest[spec.name] = max(largest.get(spec.name, 0), buffer_bytes(profile[spec.name][2], spec.dtype))
            for spec in self._outputs:
                shape = tuple(self._context.get_tensor_shape(spec.name))
                if any(d < 0 for d in shape):
                    raise UserError(f"{plan}: output {spec.name!r} has a data-dependent shape {list(shape)}; "
                                    "onebyone runs engines whose output shapes follow from the input shapes")
                largest[spec.name] = max(largest.get(spec.name, 0), buffer_bytes(shape, spec.dtype))
        batches = [(max(p[n][0][0] for n in p), min(p[n][2][0] for n in p)) for p in self._profiles]
        self._batch_range = BatchRange(min(low for low, _ in batches), max(high for _, high in batches),
                                       " (the engine's optimization profiles); rebuild with `onebyone build "
                                       "--min-batch/--max-batch` or --shapes for others")
        self._device_buffers: dict[str, int] = {}
        self._host_buffers: dict[str, np.ndarray] = {}
        for spec in [*self._inputs, *self._outputs]:
            self._device_buffers[spec.name] = self._device.device_buffer(largest[spec.name])
            self._host_buffers[spec.name] = self._device.host_buffer(largest[spec.name] // spec.dtype.itemsize,
                                                                     spec.dtype)

    def _use_profile(self, index: int) -> None:
        """Make optimization profile `index` the context's (input shapes are set after it)."""
        if not self._context.set_optimization_profile_async(index, self._stream.handle):
            raise RuntimeError(f"TensorRT refused optimization profile {index} of {self.target.label}")
        self._stream.synchronize()
        self._profile = index

    def accepts(self, shapes: dict[str, tuple[int, ...]]) -> bool:
        return profile_for(self._profiles, shapes) is not None

    def profiles(self) -> list[dict[str, Profile]]:
        """The engine's optimization profiles: per input, its (min, opt, max) shapes."""
        return self._profiles

    def layers(self) -> list[dict[str, Any]]:
        """The engine's layers as TensorRT's engine inspector reports them (describe_layers)."""
        with self._device.active():
            inspector = self._engine.create_engine_inspector()
            inspector.execution_context = self._context
            text = inspector.get_engine_information(self._trt.LayerInformationFormat.JSON)
        return describe_layers(json.loads(text))

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self._context.set_input_shape(name, shape):
            raise UserError(f"TensorRT refused shape {list(shape)} for input {name!r} of {self.target.label}; "
                            "rebuild with `onebyone build --min-batch/--max-batch` to cover it")

    def _set_address(self, name: str, address: int) -> None:
        if not self._context.set_tensor_address(name, address):
            raise RuntimeError(f"TensorRT refused the address of tensor {name!r} of {self.target.label}")

    def _bind_input(self, name: str, value: Any) -> None:
        self._set_input_shape(name, tuple(value.shape))
        if is_torch_tensor(value) and value.is_cuda and (value.device.index or 0) == self._device.ordinal:
            value = value.contiguous()
            if value.data_ptr() % TENSORRT_ALIGNMENT == 0:  # else (a slice) it goes through the copy below
                import torch

                torch.cuda.current_stream(value.device).synchronize()  # the producer's work must be done
                self._keep_alive.append(value)
                self._set_address(name, value.data_ptr())
                return
        host = np.ascontiguousarray(value.detach().cpu().numpy() if is_torch_tensor(value) else value).ravel()
        staging = self._host_buffers[name][:host.size]
        staging[...] = host
        self._device.upload(self._device_buffers[name], staging, self._stream)
        self._set_address(name, self._device_buffers[name])

    def _run(self, feeds: dict[str, Any], output_names: list[str]) -> dict[str, np.ndarray]:
        self._keep_alive: list[Any] = []
        shapes = {name: tuple(value.shape) for name, value in feeds.items()}
        index = profile_for(self._profiles, shapes)
        if index is None:
            allowed = "; ".join(f"profile {i}: {profile_text(p)}" for i, p in enumerate(self._profiles))
            asked = ", ".join(f"{name} {'x'.join(map(str, shape))}" for name, shape in shapes.items())
            raise UserError(f"{asked} fits none of {self.target.label}'s optimization profiles ({allowed}); "
                            "rebuild with `onebyone build --shapes NAME:MIN..OPT..MAX` to cover it")
        with self._device.active():
            if index != self._profile:
                self._use_profile(index)
            for name, value in feeds.items():
                self._bind_input(name, value)
            for spec in self._outputs:
                self._set_address(spec.name, self._device_buffers[spec.name])
            if not self._context.execute_async_v3(self._stream.handle):
                raise RuntimeError(f"TensorRT failed to enqueue {self.target.label}")
            shapes = {name: tuple(self._context.get_tensor_shape(name)) for name in output_names}
            views = {name: self._host_buffers[name][:int(np.prod(shape))] for name, shape in shapes.items()}
            for name, view in views.items():
                self._device.download(view, self._device_buffers[name], self._stream)
            self._stream.synchronize()
        self._keep_alive = []
        return {name: views[name].reshape(shapes[name]).copy() for name in output_names}

    def close(self) -> None:
        if getattr(self, "_engine", None) is None:
            return
        with self._device.active():
            self._context = None
            self._engine = None
            self._runtime = None
        self._host_buffers = {}  # views of page-locked memory the device frees now
        self._device_buffers = {}
        self._device.close()

