"""onebyone: bottleneck CNNs from PyTorch to verified ONNX, FP16/INT8 and TensorRT, checked against torch.

This folder is the installed `onebyone` package itself (pyproject.toml maps it, `export/`, `optimize/` and `runtime/`
to `onebyone`, `onebyone.export`, `onebyone.optimize` and `onebyone.runtime`): the public API.

    import onebyone
    with onebyone.open("build/digits_resnet/model.opt.int8-ort.onnx") as session:   # self-checked on open
        logits = session.run({"input": x})["logits"]

    result = onebyone.quantize("build/digits_resnet/model.onnx", precision="int8", calib="digits")

Importing it is cheap: it imports neither torch, onnxruntime nor TensorRT (backends load on `open`).
"""

from onebyone.runtime.bundle.tensors import TensorSpec
from onebyone.runtime.core.errors import CheckFailed, Int8OverflowWarning, UserError
from onebyone.runtime.core.version import __version__
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.opening import BACKENDS, open
from onebyone.runtime.sessions.self_check import SelfCheckFailed
from onebyone.stages import quantize

__all__ = ["BACKENDS", "CheckFailed", "Int8OverflowWarning", "QuantizeOptions", "QuantizeResult", "SelfCheckFailed",
           "Session", "TensorSpec", "UserError", "__version__", "open", "quantize"]
LAZY = dict.fromkeys(("QuantizeOptions", "QuantizeResult"), "onebyone.optimize.precision.quantize")


def __getattr__(name: str) -> object:
    """Options and result classes load with their stage (numpy, onnx_ir), not with `import onebyone`."""
    if name in LAZY:
        from importlib import import_module

        return getattr(import_module(LAZY[name]), name)
    raise AttributeError(f"module 'onebyone' has no attribute {name!r}")
