"""Precision conversion: calibration statistics, FP16 and INT8 Q/DQ graphs."""
