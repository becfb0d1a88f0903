"""Which engine runs an ONNX artifact: the one asked for, or — `backend="auto"` — the fastest correct one measured for
the artifact's kind on this CPU's class.

`FASTEST` holds only what `make bench` measured and committed (bench/openvino-<class>.json, one file per CPU class;
tests/test_openvino.py checks the table against those files): per CPU class, the artifact kinds on which OpenVINO beat
ONNX Runtime side by side, by at least bench/openvino.py's AUTO_MARGIN, with a passing kernel check. Everything else — a
class or kind not measured, a GPU machine (ONNX Runtime's CUDA/TensorRT providers), explicit `providers`, OpenVINO not
installed, a file outside a bundle whose kind is unknown, an INT8 file whose kernel check on that engine failed or was
never run on this CPU class (runtime/sessions/engine_checks.py records it when the file is written or verified) —
stays on ONNX Runtime. A `bf16` artifact runs on OpenVINO
only: it is an FP32 file whose precision is OpenVINO's BF16 inference hint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from onebyone.runtime.bundle.manifest import PRECISION_KEY
from onebyone.runtime.core.cpu import Cpu, this_cpu
from onebyone.runtime.core.errors import UserError, option
from onebyone.runtime.sessions import engines
from onebyone.runtime.sessions.target import Target

FASTEST: dict[str, dict[str, str]] = {
    # bench/openvino-x86-vnni.md (AMD EPYC, AVX-512 VNNI + BF16, no AMX): the trt file ran faster on OpenVINO than on
    # ONNX Runtime; FP32 and the ort file ran faster on ONNX Runtime.
    "x86 VNNI": {"int8-trt": "openvino"},
    # bench/openvino-x86-amx-vnni.md (Intel Xeon, AVX-512 VNNI + AMX): both INT8 files ran faster on OpenVINO (AMX
    # int8 tiles); FP32 ran faster on ONNX Runtime.
    "x86 AMX + VNNI": {"int8-trt": "openvino", "int8-ort": "openvino"},
}


def artifact_kind(target: Target) -> str | None:
    """fp32, fp16, bf16, int8-trt or int8-ort from the artifact's bundle record; outside a bundle bf16 (from the file's
    metadata) or None."""
    record = target.record
    if record is None:
        from onebyone.runtime.bundle.onnx_file import onnx_metadata  # onnx loads only when a file is opened

        return "bf16" if onnx_metadata(target.path).get(PRECISION_KEY) == "bf16" else None
    if record.precision == "int8":
        return f"int8-{record.made_by.get('flavour', 'trt')}"
    return record.precision


def auto_engine(kind: str | None, cpu: Cpu, gpu: bool, openvino_installed: bool,
                passed: Callable[[str], bool | None] = lambda engine: True) -> str:
    """The engine `auto` picks for an artifact of `kind` on `cpu` (module docstring). `passed(engine)`: whether the
    INT8 artifact passed the kernel check on `engine` on this CPU class (None: never checked here); an INT8 file
    leaves ONNX Runtime only for an engine that passed it."""
    if kind is not None and len(runners := [e.name for e in engines.opening("onnx") if kind in e.kinds]) == 1:
        return runners[0]  # bf16: openvino, the only engine that runs it
    if gpu or not openvino_installed or kind is None:
        return "onnxruntime"
    fastest = FASTEST.get(cpu.cpu_class, {}).get(kind, "onnxruntime")
    if kind.startswith("int8") and fastest != "onnxruntime" and passed(fastest) is not True:
        return "onnxruntime"
    return fastest


def onnx_engine(target: Target, backend: str, providers: Sequence[str] | None) -> str:
    """The engine that opens an ONNX target for `backend` ("auto" or an engine that opens ONNX files)."""
    kind = artifact_kind(target)
    if backend == "onnxruntime" and kind == "bf16":
        raise UserError(f"{target.label} is a bf16 artifact: an FP32 file run with OpenVINO's BF16 inference hint; "
                        f"open it with {option('backend', 'openvino')} (ONNX Runtime would run it in FP32)")
    if backend != "auto":
        return backend
    if providers is not None and kind != "bf16":
        return "onnxruntime"
    from onebyone.runtime.sessions.onnxruntime_backend import nvidia_driver_present

    cpu, record = this_cpu(), target.record
    return auto_engine(kind, cpu, nvidia_driver_present(), engines.engine("openvino").available(),
                       lambda engine: None if record is None else record.kernel_check_passed(cpu.cpu_class, engine))
