"""Checks of exported files shared by the export and optimize tests: op counts and agreement with torch."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import torch
from torch import nn

from onebyone.runtime.bundle.golden import reference_session
from tests.helpers import FP32_REL_TOL


def count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def op_counts(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def assert_matches_torch(onnx_path, model: nn.Module, input_shape, rng, batches=(1, 3)) -> None:
    session = reference_session(onnx_path)
    for batch in batches:
        x = rng.standard_normal((batch, *input_shape), dtype=np.float32)
        got = session.run(None, {"input": x})[0]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        assert got.shape == ref.shape, f"batch {batch}: ORT shape {got.shape} vs torch {ref.shape}"
        assert np.isfinite(got).all(), f"batch {batch}: non-finite outputs"
        error, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
        assert error <= FP32_REL_TOL * scale, f"batch {batch}: max|diff| {error} > {FP32_REL_TOL} x {scale}"
