"""Graph passes: one per module, each an onnx-ir in-place pass that reports what it refused and why."""
