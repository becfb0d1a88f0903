"""Golden samples — fixed reference inputs and the torch outputs for them — and checks of ONNX files against them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.manifest import Tolerance
from onebyone.runtime.core.errors import UserError


@dataclasses.dataclass(frozen=True)
class Golden:
    """Reference inputs and outputs, keyed by graph input/output name."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    def save(self, path: Path) -> None:
        """Write as .npz; keys are `input:<name>` and `output:<name>` so names never collide."""
        arrays = {f"input:{k}": v for k, v in self.inputs.items()} | {f"output:{k}": v for k, v in self.outputs.items()}
        with path.open("wb") as stream:
            np.savez(stream, **arrays)

    @classmethod
    def load(cls, path: Path) -> Golden:
        try:
            with np.load(path, allow_pickle=False) as data:
                inputs = {k.removeprefix("input:"): data[k] for k in data.files if k.startswith("input:")}
                outputs = {k.removeprefix("output:"): data[k] for k in data.files if k.startswith("output:")}
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read golden samples {path}: {err}; re-run `onebyone export`") from None
        if not inputs or not outputs:
            raise UserError(f"{path} holds no golden inputs/outputs; re-run `onebyone export`")
        return cls(inputs=inputs, outputs=outputs)


@dataclasses.dataclass(frozen=True)
class Parity:
    """How far candidate outputs are from reference outputs, measured over every element of every output."""

    max_abs_diff: float
    max_abs_ref: float
    tolerance: Tolerance

    @property
    def relative(self) -> float:
        return self.max_abs_diff / self.max_abs_ref if self.max_abs_ref > 0 else self.max_abs_diff

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_abs_diff)) and self.relative <= self.tolerance.rel_max_abs

    def as_record(self) -> dict[str, float | bool]:
        return {"max_abs_diff": self.max_abs_diff, "max_abs_ref": self.max_abs_ref, "relative": self.relative,
                "ok": self.ok}

    def describe(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        return (f"{verdict}  max|diff| {self.max_abs_diff:.3g} = {self.relative:.2e} x max|ref| "
                f"(tolerance {self.tolerance.rel_max_abs:g})")


def compare(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], tolerance: Tolerance) -> Parity:
    """Compare output dicts name by name; shapes must match exactly. NaN/Inf in a candidate make the diff infinite."""
    missing = sorted(set(reference) - set(candidate))
    if missing:
        raise UserError(f"candidate has no output(s) {missing}; its outputs are {sorted(candidate)}")
    max_diff = 0.0
    max_ref = 0.0
    for name, ref in reference.items():
        got = candidate[name]
        if got.shape != ref.shape:
            raise UserError(f"output {name!r} has shape {got.shape}, the reference has {ref.shape}")
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        max_diff = max(max_diff, float(np.max(diff)) if np.all(np.isfinite(diff)) else float("inf"))
        max_ref = max(max_ref, float(np.max(np.abs(ref))))
    return Parity(max_abs_diff=max_diff, max_abs_ref=max_ref, tolerance=tolerance)


def reference_session(onnx_path: Path | bytes) -> object:
    """An ONNX Runtime CPU session with every graph optimization disabled: the file's own semantics, nothing fused.

    Takes a file path or a serialized model.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        model = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception classes for unreadable or invalid models
        origin = "the model" if isinstance(onnx_path, bytes) else onnx_path
        raise UserError(f"ONNX Runtime cannot load {origin}: {err}") from None


def run_session(session: object, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX Runtime session and return every graph output by name."""
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def run_onnx(onnx_path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX file in the reference session and return every graph output by name."""
    return run_session(reference_session(onnx_path), inputs)
