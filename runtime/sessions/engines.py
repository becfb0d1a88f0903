"""The one registry of engines: what each runs, where, under which Triton names, whether it is installed, and how
it opens a target. `open()`'s backends, `auto`, `locate`, the CLI's choices, the kernel checks' CPU engines, the
server's model metadata and the Triton repositories all read it.

A third-party package adds an engine without touching onebyone: it defines an `Engine` (its session a `Session`
subclass constructed as `Class(target, options)`) and names it in the `onebyone.engines` entry-point group, the
entry point's name being the engine's (docs/extending.md):

    [project.entry-points."onebyone.engines"]
    myengine = "my_package.engine:ENGINE"

The names are read without importing anything (so `onebyone infer --help` lists them cheaply); an engine is loaded
when it is asked for, or when a file's suffix is not a built-in one.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import warnings
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from onebyone.runtime.core.errors import OnebyoneWarning, UserError

if TYPE_CHECKING:
    from onebyone.runtime.sessions.base import Session
    from onebyone.runtime.sessions.target import Target

ENTRY_POINT_GROUP = "onebyone.engines"
ONNX_KINDS = ("fp32", "fp16", "int8-trt", "int8-ort")  # artifact kinds (runtime/sessions/choice.py artifact_kind)


@dataclasses.dataclass(frozen=True)
class OpenOptions:
    """What `open()` passes every engine; each uses the fields that apply to it."""

    providers: Sequence[str] | None = None  # onnxruntime: execution providers in order (None: the best available)
    input_shape: tuple[int, int, int] | None = None  # torch: a factory's input shape


@dataclasses.dataclass(frozen=True)
class Engine:
    """One engine. `opens` is the target format it runs ("onnx", "plan", "torch" or a format of its own), found by
    file suffix; `kinds` the artifact kinds it runs (an engine alone in running a kind is what `auto` picks for it).
    """

    name: str
    opens: str
    suffixes: tuple[str, ...]  # files of that format; () where it is opened by name or through a bundle
    devices: tuple[str, ...]  # "cpu" and/or "gpu"
    kinds: tuple[str, ...]
    platform: str  # the KServe/Triton `platform` its served models report
    triton_backend: str | None  # the Triton backend of a repository model it runs; None: not writable for Triton
    session: str  # "module:Class", a Session subclass constructed as Class(target, options)
    requires: str | None = None  # the module it needs installed (None: always available)
    install_hint: str = ""  # how to install it, for the error when it is not

    def available(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def open(self, target: Target, options: OpenOptions) -> Session:
        """A session of `target`. The session checks what it needs (a built-in one names the package or device
        missing, after checking what it can without them); a session module that does not import is refused here."""
        module, _, name = self.session.partition(":")
        try:
            session_class = getattr(importlib.import_module(module), name)
        except ImportError as err:
            raise UserError(f"the {self.name} engine cannot load ({err}); {self.install_hint}") from None
        return session_class(target, options)


BUILTIN = (
    Engine("onnxruntime", "onnx", (".onnx",), ("cpu", "gpu"), ONNX_KINDS, "onnxruntime_onnx", "onnxruntime",
           "onebyone.runtime.sessions.onnxruntime_backend:OnnxRuntimeSession"),
    Engine("openvino", "onnx", (".onnx",), ("cpu",), (*ONNX_KINDS, "bf16"), "openvino", "openvino",
           "onebyone.runtime.sessions.openvino_backend:OpenVinoSession", "openvino",
           "pip install 'onebyone[openvino]'"),
    Engine("tensorrt", "plan", (".plan", ".engine"), ("gpu",), ("fp32", "fp16", "int8"), "tensorrt_plan", "tensorrt",
           "onebyone.runtime.sessions.tensorrt_backend:TensorRTSession", "tensorrt",
           "TensorRT needs an NVIDIA GPU and `pip install tensorrt` (docs/tensorrt.md)"),
    Engine("torch", "torch", (), ("cpu",), ("fp32",), "pytorch_libtorch", None,
           "onebyone.runtime.sessions.torch_backend:TorchSession", "torch", "pip install torch"),
)


@functools.cache
def _registered() -> dict[str, object]:
    """Entry-point name → its (unloaded) entry point, for the third-party engines installed."""
    builtin = {engine.name for engine in BUILTIN}
    return {point.name: point for point in entry_points(group=ENTRY_POINT_GROUP) if point.name not in builtin}


def names() -> tuple[str, ...]:
    """Every engine's name, built-in first; imports no third-party engine."""
    return (*(engine.name for engine in BUILTIN), *_registered())


@functools.cache
def engine(name: str) -> Engine:
    """The engine called `name`, loading a third-party one on first use."""
    for builtin in BUILTIN:
        if builtin.name == name:
            return builtin
    point = _registered().get(name)
    if point is None:
        raise UserError(f"unknown engine {name!r}; choose one of {', '.join(names())}")
    try:
        loaded = point.load()  # type: ignore[attr-defined]
    except Exception as err:  # a third-party module: anything can fail on import
        raise UserError(f"the {ENTRY_POINT_GROUP} entry point {name!r} ({point.value}) does not load: "  # type: ignore[attr-defined]
                        f"{type(err).__name__}: {err}; fix or uninstall the package that declares it") from None
    if not isinstance(loaded, Engine) or loaded.name != name:
        raise UserError(f"the {ENTRY_POINT_GROUP} entry point {name!r} ({point.value}) is not an Engine named "  # type: ignore[attr-defined]
                        f"{name!r}; fix or uninstall the package that declares it")
    return loaded


def engines() -> tuple[Engine, ...]:
    """Every engine that loads; a third-party one that does not is left out with a warning (asked for by name, it
    is an error)."""
    loaded = []
    for name in names():
        try:
            loaded.append(engine(name))
        except UserError as err:
            warnings.warn(str(err), OnebyoneWarning, stacklevel=2)
    return tuple(loaded)


def opening(target_format: str) -> tuple[Engine, ...]:
    """The engines that run targets of `target_format`, in registry order (the first is a format's default)."""
    return tuple(e for e in engines() if e.opens == target_format)


def format_of(suffix: str) -> str | None:
    """The target format a file suffix (".onnx", lower case) names, or None."""
    for candidates in (BUILTIN, engines()):
        if found := next((e.opens for e in candidates if suffix in e.suffixes), None):
            return found
    return None
