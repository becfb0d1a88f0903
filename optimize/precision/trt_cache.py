"""The legacy TensorRT calibration cache (TensorRT ≤ 10 tooling: `trtexec --calib`, IInt8Calibrator caches).

Format: a header line `TRT-<version number>-EntropyCalibration2`, then one line per tensor `name: XXXXXXXX`, the hex
of the big-endian IEEE-754 float32 bit pattern of the scale, scale = amax / 127. TensorRT ignores a cache whose
header names another version, so the version is the one the user will build with.
"""

from __future__ import annotations

import struct
from pathlib import Path

from onebyone.optimize.precision.flavours import INT8_MAX, activation_scale_of
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write

DEFAULT_TRT_VERSION = "10.13.0"


def version_number(version: str) -> int:
    """NV_TENSORRT_VERSION of a `major.minor.patch` version: major·1000 + minor·100 + patch up to 8.x,
    major·10000 + minor·100 + patch from 10.0 (NvInferVersion.h)."""
    try:
        major, minor, patch = (int(part) for part in [*version.split("."), "0", "0"][:3])
    except ValueError:
        raise UserError(f"TensorRT version {version!r} is not major.minor[.patch]") from None
    return major * (10000 if major >= 10 else 1000) + minor * 100 + patch


def scale_hex(scale: float) -> str:
    return struct.pack(">f", scale).hex()


def cache_text(ranges: dict[str, float], trt_version: str) -> str:
    """The cache for per-tensor amax values, with the scales the `trt` flavour's Q/DQ file has (a range that is 0
    or too small gets the floor scale: optimize/precision/flavours.py)."""
    lines = [f"TRT-{version_number(trt_version)}-EntropyCalibration2"]
    lines += [f"{name}: {scale_hex(activation_scale_of(amax, INT8_MAX)[0])}" for name, amax in ranges.items()]
    return "\n".join(lines) + "\n"


def write_cache(path: Path, ranges: dict[str, float], trt_version: str) -> None:
    with atomic_write(path) as tmp:
        tmp.write_text(cache_text(ranges, trt_version))


