"""TensorRT: build a plan from an ONNX file, and run one. The only module in onebyone that imports `tensorrt`
(inside functions, so importing this module needs no GPU).

Precision comes from the ONNX (FP16 types, explicit Q/DQ): networks are strongly typed — on TensorRT 10 through
the STRONGLY_TYPED creation flag (by enum: its value differs between 10 and 11), on 11 always — and TF32 is turned
off where the flag exists, so an FP32 plan computes in FP32 and is held to the FP32 tolerance.
API as in NVIDIA's TensorRT Python samples and the 10.x → 11.x migration guide.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.bundle.plan import (
    BuildOptions,
    Profile,
    buffer_bytes,
    check_compatible,
    numpy_dtype,
    read_plan_info,
)
from onebyone.runtime.bundle.tensors import BatchRange, TensorSpec, is_torch_tensor
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.progress import progress
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.cuda_memory import NEEDS_GPU, CudaDevice
from onebyone.runtime.sessions.locate import Target, describe_from_manifest, describe_from_metadata


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise UserError(f"{NEEDS_GPU} (the tensorrt package is not installed)") from None
    return tensorrt


def _strongly_typed_flags(trt: Any) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def build_plan(onnx_path: Path, staged_plan: Path, profiles: dict[str, Profile],
               options: BuildOptions) -> dict[str, Any]:
    """Parse, build and serialize an engine to `staged_plan`; update the timing cache file when one is given.
    Returns what plan.json records about the build environment: tensorrt, gpu, compute_capability, build_seconds."""
    trt = import_tensorrt()
    device = CudaDevice()
    try:
        with device.active():
            logger = trt.Logger(trt.Logger.WARNING)
            builder = trt.Builder(logger)
            network = builder.create_network(_strongly_typed_flags(trt))
            parser = trt.OnnxParser(network, logger)
            if not parser.parse_from_file(str(onnx_path)):  # from the file: external weights keep working
                errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise UserError(f"TensorRT cannot parse {onnx_path}:\n  {errors}")
            config = builder.create_builder_config()
            if options.workspace_mib is not None:
                config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
            config.builder_optimization_level = options.opt_level
            if hasattr(trt.BuilderFlag, "TF32"):
                config.clear_flag(trt.BuilderFlag.TF32)
            cache_path = options.timing_cache
            cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
            cache = config.create_timing_cache(cache_bytes)
            if not config.set_timing_cache(cache, False):
                config.set_timing_cache(config.create_timing_cache(b""), False)  # made on another GPU/version
            profile = builder.create_optimization_profile()
            for name, (low, opt, high) in profiles.items():
                profile.set_shape(name, low, opt, high)
            config.add_optimization_profile(profile)
            started = time.perf_counter()
            with progress() as bar:
                bar.add_task(f"building TensorRT engine for {onnx_path.name} on {device.name}", total=None)
                serialized = builder.build_serialized_network(network, config)
            seconds = time.perf_counter() - started
            if serialized is None:
                raise UserError(f"TensorRT could not build an engine from {onnx_path} (its log above says why); "
                                "try a larger --workspace or a lower --opt-level")
            with staged_plan.open("wb") as stream:
                stream.write(serialized)
            if cache_path is not None:
                from onebyone.runtime.core.files import atomic_write

                with atomic_write(cache_path) as tmp:
                    tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        return {"tensorrt": trt.__version__, "gpu": device.name, "compute_capability": device.compute_capability,
                "build_seconds": seconds}
    finally:
        device.close()


class TensorRTSession(Session):
    """A deserialized plan with one execution context and one CUDA stream. Device and pinned host buffers are
    allocated once, at the profile's maximum shapes, and reused; a torch CUDA tensor input of the engine's dtype is
    bound directly (zero copy)."""

    backend = "tensorrt"

    def __init__(self, target: Target) -> None:
        plan = target.path
        info = read_plan_info(plan)
        trt = import_tensorrt()
        self._device = CudaDevice()
        try:
            check_compatible(info, plan, trt.__version__, self._device.compute_capability, self._device.name)
            with self._device.active():
                self._open_engine(trt, plan)
        except BaseException:
            self._device.close()
            raise
        record = target.record
        description = (describe_from_manifest(target.manifest, record) if target.manifest is not None
                       else describe_from_metadata(plan.stem, info.metadata, info.precision))
        device = f"{self._device.name}, compute {self._device.compute_capability}, TensorRT {trt.__version__}"
        super().__init__(target, self._inputs, self._outputs, description, device, self._batch_range)

    def _open_engine(self, trt: Any, plan: Path) -> None:
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
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
        max_shapes: dict[str, tuple[int, ...]] = {}
        low, high = 1, None
        for spec in self._inputs:
            minimum, _, maximum = (tuple(s) for s in self._engine.get_tensor_profile_shape(spec.name, 0))
            low, high = max(low, minimum[0]), maximum[0] if high is None else min(high, maximum[0])
            max_shapes[spec.name] = maximum
            self._context.set_input_shape(spec.name, maximum)
        for spec in self._outputs:
            max_shapes[spec.name] = tuple(self._context.get_tensor_shape(spec.name))
        self._batch_range = BatchRange(low, high, " (the engine's optimization profile); rebuild with "
                                                  "`onebyone build --min-batch/--max-batch` for others")
        self._stream = self._device.stream()
        self._device_buffers: dict[str, int] = {}
        self._host_buffers: dict[str, np.ndarray] = {}
        for spec in [*self._inputs, *self._outputs]:
            count = int(np.prod(max_shapes[spec.name]))
            self._device_buffers[spec.name] = self._device.device_buffer(buffer_bytes(max_shapes[spec.name],
                                                                                      spec.dtype))
            self._host_buffers[spec.name] = self._device.host_buffer(count, spec.dtype)

    def _bind_input(self, name: str, value: Any) -> None:
        self._context.set_input_shape(name, tuple(value.shape))
        if is_torch_tensor(value) and value.is_cuda and (value.device.index or 0) == self._device.ordinal:
            import torch

            value = value.contiguous()
            torch.cuda.current_stream(value.device).synchronize()  # the producer's work must be done
            self._keep_alive.append(value)
            self._context.set_tensor_address(name, value.data_ptr())
            return
        host = np.ascontiguousarray(value.detach().cpu().numpy() if is_torch_tensor(value) else value).ravel()
        staging = self._host_buffers[name][:host.size]
        staging[...] = host
        self._device.upload(self._device_buffers[name], staging, self._stream)
        self._context.set_tensor_address(name, self._device_buffers[name])

    def _run(self, feeds: dict[str, Any], output_names: list[str]) -> dict[str, np.ndarray]:
        self._keep_alive: list[Any] = []
        with self._device.active():
            for name, value in feeds.items():
                self._bind_input(name, value)
            for spec in self._outputs:
                self._context.set_tensor_address(spec.name, self._device_buffers[spec.name])
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
        self._device.close()

