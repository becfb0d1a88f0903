"""The one place onebyone allocates GPU memory: pycuda on the device's primary context (the context torch uses, so
pointers from torch CUDA tensors are valid here), device buffers, page-locked host buffers and one stream.

Imported only by the TensorRT backend; pycuda itself is imported when a CudaDevice is created.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from onebyone.runtime.core.errors import UserError

NEEDS_GPU = "TensorRT engines need an NVIDIA GPU with its driver, TensorRT and pycuda: pip install 'onebyone[tensorrt]'"


def _import_pycuda() -> Any:
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise UserError(f"{NEEDS_GPU} (pycuda is not installed)") from None
    return cuda


class CudaDevice:
    """One GPU, its primary context, and the allocations made on it (released by `close`)."""

    def __init__(self, ordinal: int = 0) -> None:
        cuda = _import_pycuda()
        try:
            cuda.init()
            count = cuda.Device.count()
        except Exception as err:  # pycuda raises its own driver errors (e.g. no driver, no device)
            raise UserError(f"{NEEDS_GPU} (CUDA could not start: {err})") from None
        if ordinal >= count:
            raise UserError(f"{NEEDS_GPU} (found {count} CUDA device(s), asked for device {ordinal})")
        self._cuda = cuda
        self.ordinal = ordinal
        self._device = cuda.Device(ordinal)
        self._context = self._device.retain_primary_context()
        self.name = self._device.name()
        major, minor = self._device.compute_capability()
        self.compute_capability = f"{major}.{minor}"
        self._allocations: list[Any] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this device's primary context current for the block."""
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def device_buffer(self, nbytes: int) -> int:
        """Allocate `nbytes` of device memory (call inside `active`); returns its address."""
        allocation = self._cuda.mem_alloc(max(nbytes, 1))
        self._allocations.append(allocation)
        return int(allocation)

    def host_buffer(self, count: int, dtype: np.dtype) -> np.ndarray:
        """A page-locked host array of `count` elements (call inside `active`), for asynchronous copies."""
        return self._cuda.pagelocked_empty(max(count, 1), dtype)

    def stream(self) -> Any:
        return self._cuda.Stream()

    def upload(self, address: int, host: np.ndarray, stream: Any) -> None:
        self._cuda.memcpy_htod_async(address, host, stream)

    def download(self, host: np.ndarray, address: int, stream: Any) -> None:
        self._cuda.memcpy_dtoh_async(host, address, stream)

    def close(self) -> None:
        with self.active():
            for allocation in self._allocations:
                allocation.free()
        self._allocations.clear()
        self._context.detach()
