"""onebyone runtime: artifact bundles, golden self-checks and the `onebyone` command line.

Importing this package is cheap: it imports neither torch, onnxruntime nor TensorRT.
"""

from runtime.errors import UserError

__version__ = "0.1.0"

__all__ = ["UserError", "__version__"]
