"""Parity against the torch reference: output metrics with per-precision bounds, per-layer localisation, and
sensitivity of each layer to quantization (`onebyone parity`)."""
