"""onebyone.export: the model zoo, weight loading, torch → ONNX and the export stage."""
