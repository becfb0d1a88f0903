"""TensorRT: build a strongly typed plan from an ONNX file (`onebyone build`).

Precision comes from the ONNX (FP16 types, explicit Q/DQ): networks are strongly typed — on TensorRT 10 through
the STRONGLY_TYPED creation flag (by enum: its value differs between 10 and 11), on 11 always — and TF32 is turned
off where the flag exists, so an FP32 plan computes in FP32 and is held to the FP32 tolerance.
API as in NVIDIA's TensorRT Python samples and the 10.x → 11.x migration guide.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

from onebyone.runtime.bundle.plan import BuildOptions, Profile
from onebyone.runtime.core.errors import OnebyoneWarning, UserError, option
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.progress import progress
from onebyone.runtime.sessions.cuda_memory import CudaDevice
from onebyone.runtime.sessions.tensorrt_backend import import_tensorrt, logger


def _strongly_typed_flags(trt: Any) -> int:
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _use_timing_cache(config: Any, cache_bytes: bytes, cache_path: Path | None) -> None:
    """The timing cache from `cache_bytes`, or a fresh one where TensorRT cannot read or use them (corrupt, another
    file, made on another GPU or TensorRT); the file is then rewritten after the build."""
    try:
        cache = config.create_timing_cache(cache_bytes)
    except Exception:  # TensorRT's bindings raise their own error types for unreadable caches
        cache = None
    if cache is None or not config.set_timing_cache(cache, False):
        if cache_bytes:
            warnings.warn(f"TensorRT cannot use the timing cache {cache_path} (corrupt, or made for another GPU or "
                          "TensorRT); building with a new one, written there afterwards", OnebyoneWarning, stacklevel=2)
        config.set_timing_cache(config.create_timing_cache(b""), False)


def _set_compatibility(trt: Any, config: Any, options: BuildOptions) -> None:
    """Where the plan may run (runtime/bundle/plan.py `where_it_runs`): the hardware compatibility level, and the
    version-compatible flag (the plan then carries the lean runtime)."""
    levels = {"ampere+": trt.HardwareCompatibilityLevel.AMPERE_PLUS,
              "same-compute-capability": trt.HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY}
    if options.hardware_compatibility in levels:
        config.hardware_compatibility_level = levels[options.hardware_compatibility]
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)


def build_plan(onnx_path: Path, staged_plan: Path, profiles: list[dict[str, Profile]],
               options: BuildOptions) -> dict[str, Any]:
    """Parse, build and serialize an engine to `staged_plan`; update the timing cache file when one is given.
    Returns what plan.json records about the build environment: tensorrt, gpu, compute_capability, cuda,
    build_seconds."""
    trt = import_tensorrt()
    device = CudaDevice()
    try:
        with device.active():
            builder = trt.Builder(logger(trt))
            network = builder.create_network(_strongly_typed_flags(trt))
            parser = trt.OnnxParser(network, logger(trt))
            if not parser.parse_from_file(str(onnx_path)):  # from the file: external weights keep working
                errors = "\n  ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
                raise UserError(f"TensorRT cannot parse {onnx_path}:\n  {errors}")
            config = builder.create_builder_config()
            if options.workspace_mib is not None:
                config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mib << 20)
            config.builder_optimization_level = options.opt_level
            config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer precision for `onebyone inspect`
            if hasattr(trt.BuilderFlag, "TF32"):
                config.clear_flag(trt.BuilderFlag.TF32)
            _set_compatibility(trt, config, options)
            cache_path = options.timing_cache
            cache_bytes = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
            _use_timing_cache(config, cache_bytes, cache_path)
            for shapes in profiles:  # profile i is index i at run time (set_optimization_profile_async)
                profile = builder.create_optimization_profile()
                for name, (low, opt, high) in shapes.items():
                    profile.set_shape(name, low, opt, high)
                config.add_optimization_profile(profile)
            started = time.perf_counter()
            with progress() as bar:
                bar.add_task(f"building TensorRT engine for {onnx_path.name} on {device.name}", total=None)
                serialized = builder.build_serialized_network(network, config)
            seconds = time.perf_counter() - started
            if serialized is None:
                raise UserError(f"TensorRT could not build an engine from {onnx_path} (its log above says why); "
                                f"try a larger {option('workspace')} or a lower {option('opt_level')}")
            with staged_plan.open("wb") as stream:
                stream.write(serialized)
            if cache_path is not None:
                with atomic_write(cache_path) as tmp:
                    tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        return {"tensorrt": trt.__version__, "gpu": device.name, "compute_capability": device.compute_capability,
                "cuda": device.cuda, "build_seconds": seconds}
    finally:
        device.close()
