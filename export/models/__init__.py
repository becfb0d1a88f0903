"""Bottleneck networks with torchvision-compatible module and parameter names."""
