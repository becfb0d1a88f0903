"""One way to run any artifact: `onebyone.open(target)` → a Session with input/output specs and `run(inputs)`.

    import onebyone
    with onebyone.open("build/digits_resnet/model.opt.int8-ort.onnx") as session:   # self-checked on open
        logits = session.run({"input": x})["logits"]

Backends: `torch` (a zoo name, package.module:factory [+ weights], or a bundle's own model: the reference),
`onnxruntime` (TensorRT EP, CUDA EP or CPU: the best available unless `providers` says otherwise), `openvino` (an
ONNX file on the CPU, `onebyone[openvino]`) and `tensorrt` (a `.plan` from `onebyone build`; GPU only).
`backend="auto"` picks by target: a name → torch, `.plan` → tensorrt, `.onnx` or a bundle directory → the engine
runtime/sessions/choice.py names for the artifact's kind on this CPU (onnxruntime unless a committed measurement
says otherwise; a `bf16` artifact → openvino, the only engine that runs it). Each backend module is imported when
a session needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from onebyone.runtime.core.errors import UserError
from onebyone.runtime.sessions import engines
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.choice import onnx_engine
from onebyone.runtime.sessions.locate import locate
from onebyone.runtime.sessions.self_check import check_recorded_file, check_session
from onebyone.runtime.sessions.target import Target


def backends() -> tuple[str, ...]:
    """What `backend` may be: "auto" or an engine of runtime/sessions/engines.py's registry."""
    return ("auto", *engines.names())


def open(target: str | Path, backend: str = "auto", *, providers: Sequence[str] | None = None,
         weights: Path | None = None, input_shape: tuple[int, int, int] | None = None,
         self_check: bool = True) -> Session:
    """Open `target` (an .onnx, a .plan, a bundle directory, a zoo name or package.module:factory, or a file of a
    registered engine's format).

    `providers` (onnxruntime only): e.g. ["cuda", "cpu"]; default: the best available. `weights`/`input_shape`:
    for a torch factory. With `self_check`, a target that belongs to a bundle is run on the bundle's golden
    inputs and refused (SelfCheckFailed, with the measured error) when it is out of its recorded tolerance.
    """
    if backend not in backends():
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(backends())}")
    located = locate(target, backend, weights)
    engine = engine_for(located, backend, providers)
    if providers is not None and engine != "onnxruntime":
        raise UserError("providers apply to ONNX files run by onnxruntime only")
    if (weights is not None or input_shape is not None) and located.kind != "torch":
        raise UserError("weights and input_shape apply to torch models only; an exported artifact has its own")
    if self_check:
        check_recorded_file(located)
    session = engines.engine(engine).open(located, engines.OpenOptions(providers, input_shape))
    if self_check:
        try:
            check_session(session)
        except BaseException:
            session.close()
            raise
    return session


def engine_for(located: Target, backend: str, providers: Sequence[str] | None) -> str:
    """The engine that runs `located` for `backend`: for ONNX, runtime/sessions/choice.py decides; any other format
    has the engine asked for, or (auto) the first registered that opens it."""
    if located.kind == "onnx":
        return onnx_engine(located, backend, providers)
    return backend if backend != "auto" else engines.opening(located.kind)[0].name


def auto_backend(path: Path) -> str:
    """The engine `open(path)` (backend "auto") runs an ONNX artifact on, as chosen now."""
    return onnx_engine(locate(path, "auto", None), "auto", None)
