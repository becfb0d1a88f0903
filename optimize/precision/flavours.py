"""The choices INT8 quantization offers, by name (optimize/precision/qdq.py says what each does): the flavour of the
Q/DQ graph and the weight range, L in W_q = clip(round(W / s_c), −L, L)."""

from __future__ import annotations

FLAVOURS = ("trt", "ort")
WEIGHT_LEVELS = {"safe": 64, "full": 127}  # L of each weight range
DEFAULT_WEIGHT_RANGE = "safe"  # for both flavours: docs/cpus.md says why
INT8_MAX = 127  # symmetric S8: s = amax / INT8_MAX (TensorRT's scales, its calibration cache)
UINT8_MAX = 255  # U8 activations of the `ort` flavour: s = (hi − lo) / UINT8_MAX
