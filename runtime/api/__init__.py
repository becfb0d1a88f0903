"""onebyone: bottleneck CNNs from PyTorch to verified ONNX, FP16/INT8 and TensorRT, checked against torch.

This folder is the installed `onebyone` package itself (pyproject.toml maps it, `export/`, `optimize/` and `runtime/`
to `onebyone`, `onebyone.export`, `onebyone.optimize` and `onebyone.runtime`): the public API.

    import onebyone
    with onebyone.open("build/digits_resnet/model.opt.int8-ort.onnx") as session:   # self-checked on open
        logits = session.run({"input": x})["logits"]

The stages are functions of `onebyone.stages` (`stages.optimize(path, target="trt")`, `stages.quantize(...)`):
`onebyone.export` and `onebyone.optimize` are the stages' packages, so the functions cannot sit beside them.

Engines come from one registry (runtime/sessions/engines.py); `backends()` names them, and a package adds one
through the `onebyone.engines` entry point as an `Engine` running a `Session` subclass (docs/extending.md).

Importing it is cheap: it imports neither torch, onnxruntime nor TensorRT (backends load on `open`).
"""

from onebyone.runtime.bundle.tensors import TensorSpec
from onebyone.runtime.core.errors import CheckFailed, Int8OverflowWarning, UserError
from onebyone.runtime.core.version import __version__
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.engines import Engine, OpenOptions
from onebyone.runtime.sessions.opening import backends, open
from onebyone.runtime.sessions.self_check import SelfCheckFailed
from onebyone.runtime.sessions.target import ModelDescription

__all__ = ["CheckFailed", "Engine", "Int8OverflowWarning", "ModelDescription", "OpenOptions", "SelfCheckFailed",
           "Session", "TensorSpec", "UserError", "__version__", "backends", "open"]
