"""onebyone runtime: sessions over torch / ONNX Runtime / TensorRT (`runtime.open`), artifact bundles, golden
self-checks and the `onebyone` command line.

Importing this package is cheap: it imports neither torch, onnxruntime nor TensorRT (backends load on `open`).
"""

__version__ = "0.1.0"  # before the imports below, so a module they load may read it

from runtime.errors import UserError
from runtime.session import Session, open

__all__ = ["Session", "UserError", "__version__", "open"]
