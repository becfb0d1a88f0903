"""Numerical verification of a rewrite: ONNX Runtime (all optimizations off) before and after, same fresh inputs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onebyone.runtime.bundle.golden import reference_session, run_session
from onebyone.runtime.bundle.onnx_file import nominal_shape
from onebyone.runtime.bundle.tolerances import TOLERANCES, Tolerance
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.parity.metrics import Parity, compare

DYNAMIC_DIM = 2  # size given to a symbolic batch (first) dimension in verification inputs
DYNAMIC_SPATIAL = 32  # size of other symbolic dimensions (a dynamic H×W) when the model records no input shape


def random_inputs(graph: ir.Graph, rng: np.random.Generator,
                  nominal: list[int] | None = None) -> dict[str, np.ndarray]:
    """Standard-normal inputs for every graph input; a symbolic first (batch) dimension gets size 2, other symbolic
    dimensions the model's own size (`nominal`: C, H, W, as recorded at export), else 32."""
    inputs = {}
    for value in graph.inputs:
        if value.shape is None or value.dtype is None:
            raise UserError(f"graph input {value.name!r} has no static rank or type; cannot generate inputs")
        shape = [d if isinstance(d, int) else DYNAMIC_DIM if axis == 0
                 else nominal[axis - 1] if nominal and len(nominal) == len(value.shape) - 1 else DYNAMIC_SPATIAL
                 for axis, d in enumerate(value.shape)]
        inputs[value.name] = rng.standard_normal(shape).astype(value.dtype.numpy())
    return inputs


def run_model(model: ir.Model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return run_session(reference_session(ir.to_proto(model).SerializeToString()), inputs)


class Verifier:
    """Holds one set of fresh random inputs and compares a model's outputs before and after a rewrite."""

    def __init__(self, model: ir.Model, tolerance: Tolerance = TOLERANCES["rewrite"], seed: int | None = None) -> None:
        self.seed = seed if seed is not None else int(np.random.SeedSequence().entropy % 2**32)
        self.inputs = random_inputs(model.graph, np.random.default_rng(self.seed), nominal_shape(model))
        self.tolerance = tolerance

    def outputs(self, model: ir.Model) -> dict[str, np.ndarray]:
        return run_model(model, self.inputs)

    def compare(self, before: dict[str, np.ndarray], model: ir.Model) -> Parity:
        return compare(before, self.outputs(model), self.tolerance)
