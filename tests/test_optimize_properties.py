"""Property: any chain or branching of Conv/BN/Relu/1x1/Mul/Add/Concat (shared weights, BN with several readers, Gemm
heads), optimized for any target, computes the same outputs and is a valid ONNX file (onnx.checker, full check) that
optimizes again to the same outputs; and its FP16 and INT8 (both flavours) files are valid and within their bounds."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir
from hypothesis import example, given, settings
from hypothesis import strategies as st

from onebyone.optimize.pipeline import run_passes, select_passes
from onebyone.optimize.precision.calibrate import collect
from onebyone.optimize.precision.fp16 import convert_to_fp16
from onebyone.optimize.precision.qdq import TensorRange, insert_qdq
from onebyone.optimize.targets import TARGETS
from onebyone.optimize.verify import random_inputs, run_model
from onebyone.runtime.bundle.golden import run_session
from onebyone.runtime.bundle.onnx_file import activation_names, exposing, validity_problem, with_types
from onebyone.runtime.bundle.sources import DataSource
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.parity.metrics import compare
from tests.graphs import LAYERS, Builder, model, tensor_input

# Random compositions cancel (residual sums, Relu, constants of either sign), so an output can be much smaller than
# the intermediates whose float32 rounding a rewrite reorders: these graphs get the FP32 export tolerance, 1e-4 of the
# output scale, rather than --verify's 1e-5. A wrong rewrite is off by O(1), so this still catches every algebra bug.
PROPERTY_REL_TOL = 1e-4

layer = st.tuples(st.sampled_from(LAYERS), st.integers(1, 6), st.booleans())


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), channels=st.integers(1, 5), layers=st.lists(layer, min_size=1, max_size=7))
def test_every_target_preserves_outputs(seed, channels, layers):
    builder = Builder(seed, channels)
    for kind, width, flag in layers:
        builder.add_layer(kind, width, flag)
    if builder.current == "x":
        builder.add_layer("relu", 0, False)
    original = model(builder.nodes, [tensor_input("x", ["N", channels, 6, 6])], [builder.current], builder.init)
    inputs = random_inputs(original.graph, np.random.default_rng(seed))
    before = next(iter(run_model(original, inputs).values()))
    for target in TARGETS:
        optimized = ir.from_proto(ir.to_proto(original))  # a deep copy; copy.deepcopy breaks IR graphs
        run_passes(optimized, select_passes(target, None))
        after = next(iter(run_model(optimized, inputs).values()))
        assert after.shape == before.shape and np.isfinite(after).all()
        error = np.abs(after - before).max() / max(np.abs(before).max(), 1e-30)
        assert error <= PROPERTY_REL_TOL, f"target {target}: relative error {error:.2e}"
        assert validity_problem(optimized) is None, f"target {target}: {validity_problem(optimized)}"
        run_passes(optimized, select_passes(target, None))
        again = next(iter(run_model(optimized, inputs).values()))
        assert np.abs(again - before).max() / max(np.abs(before).max(), 1e-30) <= PROPERTY_REL_TOL
        assert validity_problem(optimized) is None, f"target {target}, optimized twice: {validity_problem(optimized)}"


layers_and_head = st.tuples(st.lists(layer, min_size=1, max_size=6), st.booleans())
FP16_UNIT_ROUNDOFF = 2.0**-11


def fp16_bound(model: ir.Model, inputs: dict[str, np.ndarray]) -> float:
    """The fp16 golden bound, widened where the graph cancels: FP16 rounds every intermediate by up to 2⁻¹¹ of its
    own scale, so an output much smaller than the intermediates it sums (x·0.280 + x·(−0.273)) carries their rounding
    magnified by that ratio, whatever the conversion does. Four roundings' worth of it, at least the fp16 row; a wrong
    conversion is off by O(1) of the output and still fails."""
    typed = with_types(model)
    session = ort_session(exposing(typed, activation_names(typed)), "none")
    values = run_session(session, inputs)
    outputs = [v.name for v in model.graph.outputs]
    largest = max(float(np.abs(a).max()) for a in values.values())
    output_scale = max(max(float(np.abs(values[name]).max()) for name in outputs), 1e-30)
    return max(TOLERANCES["fp16"].golden().max_rel, 4 * FP16_UNIT_ROUNDOFF * largest / output_scale)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), channels=st.integers(1, 4), network=layers_and_head)
@example(seed=2928, channels=1, network=([("siblings", 1, False)], False))  # x·0.280 + x·(−0.273): FP16 cancels
def test_every_precision_of_every_target_is_valid_and_within_bounds(seed, channels, network):
    """Each target's output converted to FP16 (within the fp16 row of the FP32 graph, widened where it cancels) and
    to INT8 in both flavours (ONNX Runtime with every optimization on within the kernel-check row of the file's exact
    Q/DQ math): every file passes onnx.checker's full check."""
    layers, head = network
    builder = Builder(seed, channels)
    for kind, width, flag in layers:
        builder.add_layer(kind, width, flag)
    if builder.current == "x":
        builder.add_layer("relu", 0, False)
    if head:
        builder.gemm_head(5)
    original = model(builder.nodes, [tensor_input("x", ["N", channels, 6, 6])], [builder.current], builder.init)
    rng = np.random.default_rng(seed)
    calibration = rng.standard_normal((16, channels, 6, 6)).astype(np.float32)
    inputs = {"x": rng.standard_normal((4, channels, 6, 6)).astype(np.float32)}
    for target in TARGETS:
        optimized = ir.from_proto(ir.to_proto(original))
        run_passes(optimized, select_passes(target, None))
        reference = run_model(optimized, inputs)
        half = ir.from_proto(ir.to_proto(optimized))
        convert_to_fp16(half, None, set())
        assert validity_problem(half) is None, f"{target} fp16: {validity_problem(half)}"
        bound = dataclasses.replace(TOLERANCES["fp16"].golden(), max_rel=fp16_bound(optimized, inputs))
        assert compare(reference, run_model(half, inputs), bound).ok, f"{target} fp16 (max_rel {bound.max_rel:.3g})"
        if target == "ort":
            continue  # contrib ops: quantize refuses them (an ort-target file is for ONNX Runtime's FP32 kernels)
        statistics = collect(optimized, "", DataSource.of_arrays("generated", calibration, None), 8)
        amax = statistics.ranges("minmax", 100.0)
        ranges = {name: TensorRange(amax[name], s.minimum, s.maximum) for name, s in statistics.statistics.items()}
        for flavour in ("trt", "ort"):
            quantized = ir.from_proto(ir.to_proto(optimized))
            insert_qdq(quantized, ranges, flavour, set())
            assert validity_problem(quantized) is None, f"{target} {flavour}: {validity_problem(quantized)}"
            exact = run_model(quantized, inputs)
            fused = run_session(ort_session(ir.to_proto(quantized).SerializeToString(), "all"), inputs)
            assert compare(exact, fused, TOLERANCES["int8-kernel"]).ok, f"{target} {flavour}"
