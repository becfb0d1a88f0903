"""GPU memory without a GPU: the release order of runtime/sessions/cuda_memory.py through a recording driver, every
cuda-python driver call it makes checked against the installed `cuda.bindings.driver`, and the no-GPU path with
cuda-python installed for real — one clear message, exit 2, nothing allocated."""

from __future__ import annotations

import ast
import inspect

import numpy as np
import pytest

from onebyone.runtime.core.errors import UserError
from onebyone.runtime.sessions import cuda_memory
from onebyone.runtime.sessions.cuda_memory import CudaDevice, CudaPythonDriver, Stream


class RecordingDriver:
    """The driver interface, logging every call and whether a context was current when it came."""

    package = "recording"

    def __init__(self) -> None:
        self.log: list[str] = []
        self.current = 0

    def _record(self, event: str) -> None:
        self.log.append(f"{event}{' (context current)' if self.current else ''}")

    def device_count(self) -> int:
        return 1

    def device(self, ordinal: int) -> int:
        return ordinal

    def name(self, device: int) -> str:
        return "Recording GPU"

    def compute_capability(self, device: int) -> tuple[int, int]:
        return 9, 0

    def version(self) -> int:
        return 12080

    def retain_context(self, device: int) -> str:
        self._record("retain context")
        return "context"

    def release_context(self, device: int, context: str) -> None:
        self._record("release context")

    def push(self, context: str) -> None:
        self.current += 1

    def pop(self) -> None:
        self.current -= 1

    def device_buffer(self, nbytes: int) -> tuple[int, object]:
        self._record(f"device alloc {nbytes}")
        return 4096, lambda: self._record(f"device free {nbytes}")

    def host_buffer(self, count: int, dtype: np.dtype) -> tuple[np.ndarray, object]:
        self._record(f"host alloc {count}")
        return np.empty(count, dtype), lambda: self._record(f"host free {count}")

    def stream(self) -> tuple[Stream, object]:
        self._record("stream create")
        return Stream(7, None, lambda: None), lambda: self._record("stream destroy")


def test_close_frees_everything_newest_first_on_the_context_before_releasing_it(monkeypatch):
    """pycuda's detach before the frees once leaked the page-locked buffers and the stream of every session."""
    driver = RecordingDriver()
    monkeypatch.setattr(cuda_memory, "load_driver", lambda: driver)
    device = CudaDevice()
    assert (device.compute_capability, device.cuda) == ("9.0", "12.8"), "what plan.json records of the GPU"
    with device.active():
        device.device_buffer(256)
        device.host_buffer(64, np.dtype(np.float32))
        device.stream()
    device.close()
    device.close()  # twice: nothing more
    assert driver.log == ["retain context", "device alloc 256 (context current)", "host alloc 64 (context current)",
                          "stream create (context current)", "stream destroy (context current)",
                          "host free 64 (context current)", "device free 256 (context current)", "release context"]
    assert driver.current == 0


def test_every_cuda_python_call_exists_in_the_installed_bindings():
    from cuda.bindings import driver

    tree = ast.parse(inspect.getsource(CudaPythonDriver))
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute) and node.value.attr == "_cu"}
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                  and isinstance(node.value, ast.Name) and node.value.id == "attribute"}
    assert {"cuMemAlloc", "cuMemHostAlloc", "cuStreamCreate", "cuDevicePrimaryCtxRelease"} <= used
    assert [name for name in sorted(used) if not hasattr(driver, name)] == []
    assert [name for name in sorted(attributes) if not hasattr(driver.CUdevice_attribute, name)] == []


def test_without_a_gpu_cuda_python_gives_one_clear_message(monkeypatch):
    allocations: list[str] = []
    monkeypatch.setattr(CudaPythonDriver, "device_buffer", lambda self, n: allocations.append("device"))
    assert isinstance(cuda_memory.load_driver(), CudaPythonDriver)  # installed here, importable without a GPU
    try:
        CudaDevice()
    except UserError as err:
        assert "NVIDIA GPU" in str(err) and "cuda-python" in str(err) and "onebyone[tensorrt]" in str(err)
    else:
        pytest.skip("this machine has a working CUDA driver and GPU")
    assert allocations == []


def test_each_tensorrt_extra_pins_one_cuda_major():
    """`tensorrt>=10` once resolved to the newest TensorRT for the newest CUDA, which needs the newest driver."""
    import tomllib

    from tests.helpers import REPO

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras["tensorrt"] == ["tensorrt-cu12>=10.3,<12", "cuda-bindings>=12.6,<13"]
    assert extras["tensorrt-cu13"] == ["tensorrt-cu13>=11,<12", "cuda-bindings>=13,<14"]
