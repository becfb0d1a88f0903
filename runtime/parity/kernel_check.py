"""The kernel check: an engine's outputs on an INT8 file against the same file's exact Q/DQ math.

The exact math is the file run as written: ONNX Runtime on the CPU with every graph optimization off, so each
DequantizeLinear feeds a float op and nothing is fused (`golden.reference_session`). An engine — ONNX Runtime with
its integer kernels, or any other — that differs from it by more than the `int8-kernel` bounds computes something
other than the file: int8 dot products that saturate (docs/cpus.md), or a fusion that changes the math. This
separates "the kernels compute something else" from "quantization costs accuracy", which parity against torch
measures.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.bundle.golden import reference_session, run_session
from onebyone.runtime.bundle.tolerances import TOLERANCES, Tolerance
from onebyone.runtime.core.cpu import Cpu, this_cpu
from onebyone.runtime.parity.check import run_in_batches
from onebyone.runtime.parity.metrics import Parity, compare

KERNEL_TOLERANCE = TOLERANCES["int8-kernel"]
# `auto` leaves ONNX Runtime only for an engine whose check passed with this share of every bound to spare: a file
# measured within 10% of a bound (OpenVINO's `trt` files sit near rel-L2 0.05 on some CPUs) keeps the safer engine,
# so sampling noise cannot flip the choice between two runs.
AUTO_MARGIN = 0.9


@dataclasses.dataclass(frozen=True)
class KernelCheck(Parity):
    """An engine's outputs (the candidate) against the file's exact Q/DQ math (the reference), on `samples` samples
    run on `cpu`: a Parity held to the int8-kernel row of the tolerance table."""

    cpu: Cpu
    samples: int

    def describe(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        text = (f"kernel check {verdict}  rel-L2 {self.metrics.rel_l2:.2e}  max|diff|/max|ref| "
                f"{self.metrics.max_rel:.2e} vs the file's exact Q/DQ math ({self.samples} samples, "
                f"{self.cpu.cpu_class})")
        return text + (": " + "; ".join(self.failures) if self.failures else "")

    @property
    def with_margin(self) -> bool:
        """Passed with AUTO_MARGIN of every bound: what `auto` needs before it leaves ONNX Runtime."""
        bounds = KERNEL_TOLERANCE
        return self.ok and not self.metrics.failures(Tolerance(
            max_rel=bounds.max_rel * AUTO_MARGIN, max_rel_l2=bounds.max_rel_l2 * AUTO_MARGIN,
            min_cosine=1 - (1 - bounds.min_cosine) * AUTO_MARGIN))

    def as_record(self) -> dict[str, Any]:
        return {"ok": self.ok, "with_margin": self.with_margin, "auto_margin": AUTO_MARGIN,
                "metrics": self.metrics.as_record(), "failures": self.failures,
                "bounds": KERNEL_TOLERANCE.as_record(), "samples": self.samples, "cpu": self.cpu.as_record()}


def exact_outputs(onnx_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The file's own Q/DQ math on `inputs` (one ONNX Runtime session, every optimization off)."""
    session = reference_session(onnx_path)
    if len(inputs) == 1:
        name, values = next(iter(inputs.items()))
        return run_in_batches(session, name, values)
    return run_session(session, inputs)


def check_kernels(onnx_path: Path, inputs: dict[str, np.ndarray],
                  engine_outputs: dict[str, np.ndarray]) -> KernelCheck:
    """Compare what an engine returned for `inputs` with the exact Q/DQ math of the file it ran."""
    parity = compare(exact_outputs(onnx_path, inputs), engine_outputs, KERNEL_TOLERANCE)
    return KernelCheck(parity.metrics, parity.tolerance, this_cpu(), len(next(iter(inputs.values()))))


def fresh_inputs(like: dict[str, np.ndarray], count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`count` new samples per input, Gaussian with the per-channel mean and standard deviation of `like` (axis 1),
    so they exercise the calibrated ranges without repeating the samples the artifact was checked on."""
    fresh = {}
    for name, values in like.items():
        if not np.issubdtype(values.dtype, np.floating) or values.ndim < 2:
            fresh[name] = values[rng.integers(0, len(values), count)]
            continue
        axes = (0, *range(2, values.ndim))
        shape = (1, values.shape[1]) + (1,) * (values.ndim - 2)
        mean = values.mean(axis=axes).reshape(shape)
        std = values.std(axis=axes).reshape(shape)
        noise = rng.standard_normal((count, *values.shape[1:]))
        fresh[name] = (mean + std * noise).astype(values.dtype)
    return fresh
