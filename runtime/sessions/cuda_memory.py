"""The one place onebyone allocates GPU memory: device buffers, page-locked host buffers and streams on the device's
primary context (the context torch uses, so pointers from torch CUDA tensors are valid here).

Two drivers, one interface: cuda-python's driver API (`cuda.bindings.driver`: binary wheels, what NVIDIA's TensorRT
samples use) when it is installed, else pycuda (which builds against a CUDA toolkit). `onebyone[tensorrt]` installs
cuda-python. The driver package is imported when a CudaDevice is created, and only by this module.

Release order: `close` frees everything on the device's context, newest first — streams, page-locked host
buffers, device buffers — and only then lets go of the primary context. With cuda-python the context is released by
device (`cuDevicePrimaryCtxRelease`), so closing works from any thread (a server shutting down); pycuda's
`detach` only acts on the thread that made the context current.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from onebyone.runtime.core.errors import UserError

NEEDS_GPU = ("TensorRT engines need an NVIDIA GPU with its driver, TensorRT and cuda-python (or pycuda): "
             "pip install 'onebyone[tensorrt]'")


@dataclasses.dataclass(frozen=True)
class Stream:
    """A CUDA stream: `handle` is what TensorRT's execute_async_v3 takes."""

    handle: int
    native: Any
    synchronize: Callable[[], None]


class CudaPythonDriver:
    """cuda-python's driver API; every call's CUresult is checked."""

    package = "cuda-python"

    def __init__(self) -> None:
        from cuda.bindings import driver

        self._cu = driver

    def _checked(self, result: tuple) -> Any:
        error, *values = result
        if error != self._cu.CUresult.CUDA_SUCCESS:
            raise RuntimeError(f"CUDA driver call failed: {error.name}")
        return values[0] if len(values) == 1 else values

    def device_count(self) -> int:
        self._checked(self._cu.cuInit(0))
        return int(self._checked(self._cu.cuDeviceGetCount()))

    def device(self, ordinal: int) -> Any:
        return self._checked(self._cu.cuDeviceGet(ordinal))

    def version(self) -> int:
        """The CUDA version the driver supports, e.g. 12040 for 12.4."""
        return int(self._checked(self._cu.cuDriverGetVersion()))

    def name(self, device: Any) -> str:
        return bytes(self._checked(self._cu.cuDeviceGetName(256, device))).split(b"\0")[0].decode()

    def compute_capability(self, device: Any) -> tuple[int, int]:
        attribute = self._cu.CUdevice_attribute
        return (int(self._checked(self._cu.cuDeviceGetAttribute(
                    attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device))),
                int(self._checked(self._cu.cuDeviceGetAttribute(
                    attribute.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device))))

    def retain_context(self, device: Any) -> Any:
        return self._checked(self._cu.cuDevicePrimaryCtxRetain(device))

    def release_context(self, device: Any, context: Any) -> None:
        self._checked(self._cu.cuDevicePrimaryCtxRelease(device))

    def push(self, context: Any) -> None:
        self._checked(self._cu.cuCtxPushCurrent(context))

    def pop(self) -> None:
        self._checked(self._cu.cuCtxPopCurrent())

    def device_buffer(self, nbytes: int) -> tuple[int, Callable[[], None]]:
        pointer = self._checked(self._cu.cuMemAlloc(nbytes))
        return int(pointer), lambda: self._checked(self._cu.cuMemFree(pointer))

    def host_buffer(self, count: int, dtype: np.dtype) -> tuple[np.ndarray, Callable[[], None]]:
        nbytes = count * np.dtype(dtype).itemsize
        address = int(self._checked(self._cu.cuMemHostAlloc(nbytes, 0)))
        array = np.frombuffer((ctypes.c_char * nbytes).from_address(address), dtype=dtype, count=count)
        return array, lambda: self._checked(self._cu.cuMemFreeHost(address))

    def stream(self) -> tuple[Stream, Callable[[], None]]:
        native = self._checked(self._cu.cuStreamCreate(0))
        stream = Stream(int(native), native, lambda: self._checked(self._cu.cuStreamSynchronize(native)))
        return stream, lambda: self._checked(self._cu.cuStreamDestroy(native))

    def upload(self, address: int, host: np.ndarray, stream: Stream) -> None:
        self._checked(self._cu.cuMemcpyHtoDAsync(address, host.ctypes.data, host.nbytes, stream.native))

    def download(self, host: np.ndarray, address: int, stream: Stream) -> None:
        self._checked(self._cu.cuMemcpyDtoHAsync(host.ctypes.data, address, host.nbytes, stream.native))


class PyCudaDriver:
    """pycuda, for installations that have it instead of cuda-python."""

    package = "pycuda"

    def __init__(self) -> None:
        import pycuda.driver as cuda

        self._cuda = cuda

    def device_count(self) -> int:
        self._cuda.init()
        return int(self._cuda.Device.count())

    def device(self, ordinal: int) -> Any:
        return self._cuda.Device(ordinal)

    def version(self) -> int:
        return int(self._cuda.get_driver_version())

    def name(self, device: Any) -> str:
        return str(device.name())

    def compute_capability(self, device: Any) -> tuple[int, int]:
        major, minor = device.compute_capability()
        return int(major), int(minor)

    def retain_context(self, device: Any) -> Any:
        return device.retain_primary_context()

    def release_context(self, device: Any, context: Any) -> None:
        context.detach()

    def push(self, context: Any) -> None:
        context.push()

    def pop(self) -> None:
        self._cuda.Context.pop()

    def device_buffer(self, nbytes: int) -> tuple[int, Callable[[], None]]:
        allocation = self._cuda.mem_alloc(nbytes)
        return int(allocation), allocation.free

    def host_buffer(self, count: int, dtype: np.dtype) -> tuple[np.ndarray, Callable[[], None]]:
        array = self._cuda.pagelocked_empty(count, dtype)
        return array, array.base.free

    def stream(self) -> tuple[Stream, Callable[[], None]]:
        native = self._cuda.Stream()
        holder = [native]  # released (and destroyed by pycuda) while the context is still current
        return Stream(native.handle, native, native.synchronize), holder.clear

    def upload(self, address: int, host: np.ndarray, stream: Stream) -> None:
        self._cuda.memcpy_htod_async(address, host, stream.native)

    def download(self, host: np.ndarray, address: int, stream: Stream) -> None:
        self._cuda.memcpy_dtoh_async(host, address, stream.native)


Driver = CudaPythonDriver | PyCudaDriver


def driver_installed() -> bool:
    """Whether cuda-python or pycuda is installed (without importing either)."""
    from importlib.util import find_spec

    return (find_spec("cuda") is not None and find_spec("cuda.bindings") is not None) or find_spec("pycuda") is not None


def load_driver() -> Driver:
    """cuda-python's driver when installed, else pycuda's; neither is a UserError naming the extra."""
    for driver in (CudaPythonDriver, PyCudaDriver):
        try:
            return driver()
        except ImportError:
            continue
    raise UserError(f"{NEEDS_GPU} (neither cuda-python nor pycuda is installed)")


class CudaDevice:
    """One GPU, its primary context, and what was allocated on it (released by `close`, newest first)."""

    def __init__(self, ordinal: int = 0) -> None:
        driver = load_driver()
        try:
            count = driver.device_count()
        except Exception as err:  # no driver library, no device, a driver too old: each driver raises its own
            raise UserError(f"{NEEDS_GPU} (CUDA could not start through {driver.package}: {err})") from None
        if ordinal >= count:
            raise UserError(f"{NEEDS_GPU} (found {count} CUDA device(s), asked for device {ordinal})")
        self._driver = driver
        self.ordinal = ordinal
        self._device = driver.device(ordinal)
        self.name = driver.name(self._device)
        major, minor = driver.compute_capability(self._device)
        self.compute_capability = f"{major}.{minor}"
        version = driver.version()
        self.cuda = f"{version // 1000}.{version % 1000 // 10}"  # the CUDA version the driver supports
        self._context = driver.retain_context(self._device)
        self._releases: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Make this device's primary context current for the block."""
        self._driver.push(self._context)
        try:
            yield
        finally:
            self._driver.pop()

    def device_buffer(self, nbytes: int) -> int:
        """Allocate `nbytes` of device memory (call inside `active`); returns its address."""
        address, release = self._driver.device_buffer(max(nbytes, 1))
        self._releases.append(release)
        return address

    def host_buffer(self, count: int, dtype: np.dtype) -> np.ndarray:
        """A page-locked host array of `count` elements (call inside `active`), for asynchronous copies."""
        array, release = self._driver.host_buffer(max(count, 1), dtype)
        self._releases.append(release)
        return array

    def stream(self) -> Stream:
        stream, release = self._driver.stream()
        self._releases.append(release)
        return stream

    def upload(self, address: int, host: np.ndarray, stream: Stream) -> None:
        self._driver.upload(address, host, stream)

    def download(self, host: np.ndarray, address: int, stream: Stream) -> None:
        self._driver.download(host, address, stream)

    def close(self) -> None:
        """Free every allocation, newest first, on the context; then release the context (once)."""
        if self._context is None:
            return
        with self.active():
            while self._releases:
                self._releases.pop()()
        self._driver.release_context(self._device, self._context)
        self._context = None
