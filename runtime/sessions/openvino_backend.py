"""OpenVINO sessions: an ONNX artifact on the CPU through OpenVINO's CPU plugin, the only module that imports openvino.

- The ONNX is read as it is (`read_model`) and compiled for the CPU with an explicit `INFERENCE_PRECISION_HINT`:
  `f32` for every artifact except a `bf16` one, so an FP32 file stays FP32 (on AMX CPUs OpenVINO's default is BF16)
  and is held to the FP32 bounds, and an INT8 file's float parts run as written; `bf16` for a `bf16` artifact
  (`onebyone quantize --precision bf16`), refused on a CPU without AVX512-BF16 or AMX-BF16, where OpenVINO would run
  something else than the artifact says.
- Shapes: the model is compiled once, as the file declares it: a dynamic batch stays dynamic. A compile per batch
  size was measured no faster (docs/openvino.md; `make bench` keeps a static-shape row beside the session's), and
  would cost a compile for every batch size a server forms.
- Threads: the process's CPU affinity, like every ONNX Runtime session (runtime/core/ort_session.py); latency hint,
  one stream, so a batch uses every thread.
- Concurrency: one infer request per concurrent caller, taken from a pool and returned after the call (the server's
  batcher and its threads share one session).
- On a CPU whose int8 dot products saturate, an INT8 file with overflow-prone weights warns (Int8OverflowWarning),
  as in ONNX Runtime; the self-check's kernel check compares OpenVINO's outputs with the file's exact Q/DQ math.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from onebyone.runtime.bundle.int8_overflow import warn_if_overflow_prone
from onebyone.runtime.bundle.onnx_file import onnx_metadata
from onebyone.runtime.bundle.tensors import DYNAMIC, TensorSpec
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.cpu import Cpu, this_cpu
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.ort_session import affinity_threads
from onebyone.runtime.parity.check import Engine
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.engines import OpenOptions
from onebyone.runtime.sessions.target import Target, describe_from_manifest, describe_from_metadata

INSTALL_HINT = "install it with: pip install 'onebyone[openvino]'"
BF16_FEATURES = frozenset({"avx512_bf16", "amx_bf16"})


def import_openvino() -> Any:
    """The openvino module, or a UserError naming the extra to install."""
    try:
        import openvino
    except ImportError:
        raise UserError(f"the openvino backend needs OpenVINO, which is not installed; {INSTALL_HINT}") from None
    return openvino


def bf16_refusal(cpu: Cpu) -> str | None:
    """Why `cpu` cannot run BF16 inference natively (None: it can)."""
    if cpu.features & BF16_FEATURES:
        return None
    return (f"BF16 needs a CPU with AVX512-BF16 or AMX-BF16; this one ({cpu.describe()}) has neither, so OpenVINO "
            "would not compute in BF16; use the FP32 artifact, or INT8 (`onebyone quantize --precision int8`)")


def precision_hint(precision: str | None, cpu: Cpu) -> str:
    """The INFERENCE_PRECISION_HINT an artifact of `precision` is compiled with on `cpu`."""
    if precision != "bf16":
        return "f32"
    if (refusal := bf16_refusal(cpu)) is not None:
        raise UserError(refusal)
    return "bf16"


def _spec(port: Any) -> TensorSpec:
    name = port.get_any_name()
    try:
        dtype = np.dtype(port.get_element_type().to_dtype())
    except (TypeError, RuntimeError):
        raise UserError(f"tensor {name!r} has type {port.get_element_type()}, which onebyone sessions do not "
                        "support") from None
    shape = tuple(d.get_length() if d.is_static else DYNAMIC for d in port.get_partial_shape())
    return TensorSpec(name, dtype, shape)


class _Compiled:
    """One compiled model and its idle infer requests (one per concurrent caller, made on demand)."""

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def infer(self, arrays: dict[str, np.ndarray]) -> tuple[Any, ...]:
        with self._lock:
            request = self._idle.pop() if self._idle else self.compiled.create_infer_request()
        try:
            return request.infer(arrays).to_tuple()
        finally:
            with self._lock:
                self._idle.append(request)


class OpenVinoSession(Session):
    """An ONNX file compiled by OpenVINO for the CPU."""

    backend = "openvino"

    def __init__(self, target: Target, options: OpenOptions) -> None:
        openvino = import_openvino()
        path = target.path
        core = openvino.Core()
        try:
            model = core.read_model(str(path))
        except RuntimeError as err:
            raise UserError(f"OpenVINO cannot read {path}: {_first_line(err)}") from None
        description = (describe_from_manifest(target.manifest, target.record) if target.manifest is not None
                       else describe_from_metadata(path.stem, onnx_metadata(path), None))
        cpu = this_cpu()
        self.precision_hint = precision_hint(description.precision, cpu)
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": self.precision_hint, "PERFORMANCE_HINT": "LATENCY",
                                  "NUM_STREAMS": 1}
        if (threads := affinity_threads()) is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._compiled = _Compiled(core.compile_model(model, "CPU", config))
        except RuntimeError as err:
            raise UserError(f"OpenVINO cannot compile {path} for the CPU: {_first_line(err)}") from None
        if description.precision in (None, "int8"):
            warn_if_overflow_prone(path, cpu)
        ports = self._compiled.compiled
        device = f"OpenVINO {openvino.get_version().split('-')[0]} CPU, {self.precision_hint} on {cpu.describe()}"
        super().__init__(target, [_spec(p) for p in ports.inputs], [_spec(p) for p in ports.outputs], description,
                         device)

    def _run(self, feeds: dict[str, Any], output_names: list[str]) -> dict[str, np.ndarray]:
        arrays = {name: value if isinstance(value, np.ndarray) else value.detach().cpu().numpy()
                  for name, value in feeds.items()}
        values = self._compiled.infer(arrays)
        by_name = {spec.name: np.array(value) for spec, value in zip(self.outputs, values, strict=True)}
        return {name: by_name[name] for name in output_names}

    def close(self) -> None:
        self._compiled = None


def stock_openvino(cpu: Cpu, binding: bool = True) -> Engine:
    """OpenVINO as a user's `compile_model(path, "CPU")` or Triton's openvino backend runs a file: default
    properties. Its default inference precision is bf16 on a CPU with AVX512-BF16 or AMX-BF16 (the CPU plugin's
    documented default), so there a file is held to the wider of its own row and the bf16 row; elsewhere to its own.
    `binding`: whether a failure fails the check (Engine.binding)."""
    openvino = import_openvino()

    def open_file(path: Any) -> Any:
        compiled = openvino.Core().compile_model(str(path), "CPU")
        names = [port.get_any_name() for port in compiled.outputs]
        return lambda feeds: dict(zip(names, (np.array(v) for v in compiled(feeds).to_tuple()), strict=True))

    default = "bf16" if bf16_refusal(cpu) is None else "f32"
    return Engine("openvino defaults", open_file, f"stock OpenVINO (compile_model defaults: {default} on this CPU)",
                  TOLERANCES["bf16"] if default == "bf16" else None, binding)


def _first_line(err: Exception) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
