"""onebyone.runtime: sessions over torch / ONNX Runtime / TensorRT (`onebyone.open`), artifact bundles, golden
self-checks, parity, serving and the `onebyone` command line. The public API is the `onebyone` package
(runtime/api/__init__.py)."""
