"""ONNX Runtime sessions: the best available execution provider (TensorRT EP → CUDA EP → CPU), or the ones asked for.

GPU providers are only tried when an NVIDIA driver is present, so a CPU machine with the onnxruntime-gpu wheel
neither prints provider-load errors nor silently claims a GPU. A provider that was asked for by name but could not
be created is an error, not a quiet fallback to the CPU.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

from onebyone.runtime.bundle.int8_overflow import warn_if_overflow_prone
from onebyone.runtime.bundle.tensors import DYNAMIC, TensorSpec
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.engines import OpenOptions
from onebyone.runtime.sessions.target import Target, describe_from_manifest, describe_from_metadata

PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
             "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int16)": np.int16, "tensor(int32)": np.int32,
             "tensor(int64)": np.int64, "tensor(bool)": np.bool_}


def _loadable(*libraries: str) -> bool:
    for library in libraries:
        try:
            ctypes.CDLL(library)
            return True
        except OSError:
            continue
    return False


def nvidia_driver_present() -> bool:
    return _loadable("libcuda.so.1", "nvcuda.dll")


def _provider_name(name: str) -> str:
    full = PROVIDERS.get(name.lower(), name)
    if full not in PROVIDERS.values():
        raise UserError(f"unknown execution provider {name!r}; choose from {', '.join(PROVIDERS)}")
    return full


def choose_providers(requested: Sequence[str] | None, available: list[str], driver: bool,
                     tensorrt_libs: bool) -> list[str]:
    """The provider list to create a session with. Auto: GPU providers only where they can work, CPU last."""
    if requested is None:
        gpu = [p for p in GPU_PROVIDERS if p in available and driver
               and (p != "TensorrtExecutionProvider" or tensorrt_libs)]
        return [*gpu, "CPUExecutionProvider"]
    chosen = [_provider_name(name) for name in requested]
    for provider in chosen:
        if provider not in available:
            raise UserError(f"this onnxruntime build has no {provider} (it has {', '.join(available)}); "
                            "install onnxruntime-gpu for CUDA/TensorRT")
        if provider in GPU_PROVIDERS and not driver:
            raise UserError(f"{provider} needs an NVIDIA GPU and its driver; none was found on this machine — "
                            "use the cpu provider")
    return chosen


def _provider_options(provider: str) -> dict[str, str]:
    if provider == "TensorrtExecutionProvider":  # engines are built once and reused from the cache
        from onebyone.runtime.core.cache import cache_dir

        return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir() / "ort-tensorrt")}
    return {}


def _spec(value: Any) -> TensorSpec:
    if value.type not in ORT_TYPES:
        raise UserError(f"tensor {value.name!r} has type {value.type}, which onebyone sessions do not support")
    shape = tuple(d if isinstance(d, int) and d > 0 else DYNAMIC for d in value.shape)
    return TensorSpec(value.name, np.dtype(ORT_TYPES[value.type]), shape)


class OnnxRuntimeSession(Session):
    """An ONNX file in ONNX Runtime with every graph optimization enabled (the deployment configuration)."""

    backend = "onnxruntime"

    def __init__(self, target: Target, options: OpenOptions) -> None:
        import onnxruntime as ort

        providers = options.providers
        path = target.path
        chosen = choose_providers(providers, ort.get_available_providers(), nvidia_driver_present(),
                                  _loadable("libnvinfer.so.10", "libnvinfer.so.11"))
        self._session = ort_session(path, "all", providers=chosen,
                                    provider_options=[_provider_options(p) for p in chosen])
        created = self._session.get_providers()
        if providers is not None and (lost := [p for p in chosen if p not in created]):
            raise UserError(f"ONNX Runtime could not create {', '.join(lost)} for {path} (missing CUDA/cuDNN/TensorRT "
                            "libraries?); see onnxruntime's GPU requirements, or use the cpu provider")
        record = target.record
        precision = record.precision if record is not None else None
        metadata = self._session.get_modelmeta().custom_metadata_map
        description = (describe_from_manifest(target.manifest, record) if target.manifest is not None
                       else describe_from_metadata(path.stem, metadata, precision))
        on_cpu = created[0] == "CPUExecutionProvider"
        if on_cpu and description.precision in (None, "int8"):
            warn_if_overflow_prone(path, this_cpu())
        device = ", ".join(created) + (f" on {this_cpu().describe()}" if on_cpu else "")
        super().__init__(target, [_spec(i) for i in self._session.get_inputs()],
                         [_spec(o) for o in self._session.get_outputs()], description, device)

    def _run(self, feeds: dict[str, Any], output_names: list[str]) -> dict[str, np.ndarray]:
        arrays = {name: value if isinstance(value, np.ndarray) else value.detach().cpu().numpy()
                  for name, value in feeds.items()}
        return dict(zip(output_names, self._session.run(output_names, arrays), strict=True))

    def close(self) -> None:
        self._session = None
