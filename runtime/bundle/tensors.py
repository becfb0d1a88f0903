"""What a session's inputs and outputs look like, and the validation every `Session.run` applies to its inputs.

Inputs may be numpy arrays or torch tensors (CPU or CUDA). A tensor whose dtype already matches is passed through
untouched, so a CUDA tensor can reach a TensorRT engine without a copy; anything else becomes a numpy array. Dtypes
are cast only when no value changes (int8 → float32 always; float64 → float32 when every value survives the round
trip); everything else is a clear error, as are unknown or missing names, wrong rank or shape, a batch outside the
session's range, and NaN/Inf in floating-point inputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from onebyone.runtime.core.errors import UserError

DYNAMIC = -1  # a dimension any size may take (the batch of a dynamic-batch model)


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: name, numpy dtype, shape with -1 for dynamic dimensions."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.name!r} {self.dtype.name} [{', '.join(str(d) for d in self.shape)}]"


def batchable(specs: list[TensorSpec]) -> bool:
    """Whether every tensor has a dynamic first (batch) axis, so requests can be batched together."""
    return all(spec.shape and spec.shape[0] == DYNAMIC for spec in specs)


def spec_records(specs: list[TensorSpec]) -> list[dict[str, Any]]:
    """Specs as JSON-ready dicts (plan.json); `spec_from_record` reads one back."""
    return [{"name": s.name, "dtype": s.dtype.name, "shape": list(s.shape)} for s in specs]


def spec_from_record(record: dict[str, Any]) -> TensorSpec:
    return TensorSpec(record["name"], np.dtype(record["dtype"]), tuple(record["shape"]))


@dataclasses.dataclass(frozen=True)
class BatchRange:
    """Batch sizes a session accepts (a TensorRT engine's optimization profile; unbounded elsewhere)."""

    minimum: int = 1
    maximum: int | None = None
    rebuild_hint: str = ""

    def check(self, name: str, batch: int) -> None:
        if batch < self.minimum or (self.maximum is not None and batch > self.maximum):
            upper = "" if self.maximum is None else f"..{self.maximum}"
            raise UserError(f"input {name!r} has batch {batch}; this session accepts batch {self.minimum}{upper}"
                            f"{self.rebuild_hint}")


def is_torch_tensor(value: object) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "data_ptr")


def _torch_numpy_dtype(tensor: Any) -> np.dtype | None:
    """The numpy dtype of a torch tensor's dtype, or None where numpy has none (bfloat16, float8, ...)."""
    import torch

    try:
        return torch.empty(0, dtype=tensor.dtype).numpy().dtype
    except TypeError:
        return None


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if is_torch_tensor(value):
        if _torch_numpy_dtype(value) is None:
            raise UserError(f"input {name!r} is a torch {value.dtype} tensor, which has no numpy equivalent; "
                            "convert it to the model's dtype first")
        return value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return value
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as err:
        raise UserError(f"input {name!r} is a {type(value).__name__}, not an array: {err}") from None


def _cast_losslessly(name: str, array: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if array.dtype == dtype:
        return array
    if array.dtype.kind not in "biuf" or dtype.kind not in "biuf":
        raise UserError(f"input {name!r} is {array.dtype}; the model takes {dtype.name}")
    if np.can_cast(array.dtype, dtype, "safe"):
        return array.astype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        cast = array.astype(dtype)
        exact = np.array_equal(cast.astype(array.dtype), array, equal_nan=array.dtype.kind == "f")
    if not exact:
        raise UserError(f"input {name!r} is {array.dtype} and casting it to the model's {dtype.name} would change "
                        f"its values; pass {dtype.name} (e.g. x.astype(np.{dtype.name}))")
    return cast


def _check_shape(spec: TensorSpec, shape: tuple[int, ...], batch_range: BatchRange) -> None:
    if len(shape) != len(spec.shape):
        hint = " — add a batch dimension (x[None])" if len(shape) + 1 == len(spec.shape) else ""
        raise UserError(f"input {spec.name!r} has rank {len(shape)} (shape {list(shape)}); the model takes "
                        f"rank {len(spec.shape)} {list(spec.shape)}{hint}")
    wrong = [axis for axis, (got, want) in enumerate(zip(shape, spec.shape, strict=True))
             if want != DYNAMIC and got != want]
    if wrong:
        raise UserError(f"input {spec.name!r} has shape {list(shape)}; the model takes {list(spec.shape)} "
                        f"(axis {wrong[0]} differs)")
    if any(size == 0 for size in shape):
        raise UserError(f"input {spec.name!r} has an empty dimension (shape {list(shape)})")
    if spec.shape and spec.shape[0] == DYNAMIC:
        batch_range.check(spec.name, shape[0])


def _check_finite(name: str, value: Any) -> None:
    if is_torch_tensor(value):
        import torch

        bad = int((~torch.isfinite(value)).sum()) if value.is_floating_point() else 0
    else:
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value))) if value.dtype.kind == "f" else 0
    if bad:
        raise UserError(f"input {name!r} has {bad} NaN/Inf value(s); check the preprocessing that produced it")


def prepare_inputs(specs: list[TensorSpec], inputs: Mapping[str, Any] | Any,
                   batch_range: BatchRange | None = None) -> dict[str, Any]:
    """Validate `inputs` against `specs` → name → numpy array, or torch tensor when its dtype already matches.

    A model with a single input also takes a bare array instead of a dict.
    """
    batch_range = batch_range or BatchRange()
    if not isinstance(inputs, Mapping):
        if len(specs) != 1:
            raise UserError(f"the model has {len(specs)} inputs ({', '.join(s.name for s in specs)}); "
                            "pass a dict of name → array")
        inputs = {specs[0].name: inputs}
    known = {spec.name: spec for spec in specs}
    unknown = sorted(set(inputs) - set(known))
    if unknown:
        raise UserError(f"unknown input(s) {unknown}; the model's inputs are "
                        f"{', '.join(s.describe() for s in specs)}")
    missing = [known[name].describe() for name in known if name not in inputs]
    if missing:
        raise UserError(f"missing input(s): {', '.join(missing)}")
    prepared: dict[str, Any] = {}
    for name, value in inputs.items():
        spec = known[name]
        if not (is_torch_tensor(value) and _torch_numpy_dtype(value) == spec.dtype):
            value = _cast_losslessly(name, _to_numpy(name, value), spec.dtype)
        _check_shape(spec, tuple(value.shape), batch_range)
        _check_finite(name, value)
        prepared[name] = value
    return prepared


def select_outputs(specs: list[TensorSpec], requested: list[str] | None) -> list[str]:
    """The output names to return: all by default, else the requested ones (each must exist)."""
    names = [spec.name for spec in specs]
    if requested is None:
        return names
    unknown = sorted(set(requested) - set(names))
    if unknown:
        raise UserError(f"unknown output(s) {unknown}; the model's outputs are {names}")
    return list(requested)
