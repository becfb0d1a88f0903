"""Graph passes and precision conversion of exported ONNX models (see DESIGN.md)."""
