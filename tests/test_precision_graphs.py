"""FP16 conversion and Q/DQ insertion on small graphs and the zoo, against independent references: torch's
fake-quantization for the INT8 arithmetic, the FP32 graph (and torch's golden outputs) for FP16."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
import torch
from onnx import helper

from onebyone.optimize.precision.calibrate import collect
from onebyone.optimize.precision.fp16 import SAFE_FP16_MAX, convert_to_fp16
from onebyone.optimize.precision.qdq import TensorRange, activation_scale, insert_qdq, small_gemm
from onebyone.optimize.precision.trt_rules import trt_violations
from onebyone.optimize.verify import run_model
from onebyone.runtime.bundle.golden import Golden, reference_session, run_session
from onebyone.runtime.bundle.onnx_file import activation_names, exposing, load_model, validity_problem, with_types
from onebyone.runtime.bundle.sources import DataSource
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.parity.metrics import compare
from onebyone.runtime.preflight.lint import lint_model
from tests.graphs import model, tensor_input
from tests.helpers import ZOO_PARAMS, files_under

INT8_REL_TOL = 1e-5  # ORT's Q/DQ vs torch fake-quantization of the same scales: float rounding only


def residual_conv(rng: np.random.Generator) -> ir.Model:
    """y = Conv3x3(x) + x, 4 channels: one weighted op and one residual Add reading the same input."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["y"], name="add")]
    weights = {"w": rng.normal(0, 0.3, (4, 4, 3, 3)) * rng.uniform(0.1, 3, (4, 1, 1, 1)), "b": rng.normal(0, 1, 4)}
    return model(nodes, [tensor_input("x", ["N", 4, 6, 6])], ["y"], weights)


def test_trt_qdq_computes_torch_fake_quantization(rng):
    """ORT on the Q/DQ graph equals torch's fake-quantization of x (per tensor) and of the stored INT8 weights
    (per channel): conv(q(x), q(W)) + b + q(x)."""
    graph = residual_conv(rng)
    x = rng.normal(0, 1, (3, 4, 6, 6)).astype(np.float32)
    amax = float(np.abs(x).max()) * 0.8  # some values saturate
    product = next(n for n in graph.graph if n.op_type == "Conv").outputs[0]
    product.type, product.shape = None, None  # as a pass leaves a value it made (merge_siblings' merged Conv)
    insert_qdq(graph, {"x": TensorRange(amax, float(x.min()), float(x.max()))}, "trt", set())
    assert sum(n.op_type == "QuantizeLinear" for n in graph.graph) == 1, "one Q/DQ pair serves Conv and Add"
    conv = next(n for n in graph.graph if n.op_type == "Conv")
    weight_dq = conv.inputs[1].producer()
    weight_scale = torch.from_numpy(weight_dq.inputs[1].const_value.numpy())
    assert weight_dq.attributes.get_int("axis") == 0 and weight_scale.shape == (4,)
    weight = torch.from_numpy(weight_dq.inputs[0].const_value.numpy().astype(np.float32))
    scale, _ = activation_scale(TensorRange(amax, 0, 0), "trt")
    quantized_x = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), float(scale), 0, -128, 127)
    assert len(conv.inputs) == 2, "the bias of a quantized product is stated as an Add after it"
    bias_add = next(use.node for use in conv.outputs[0].uses())
    assert bias_add.op_type == "Add" and bias_add.outputs[0].name == "c", "the Add keeps the product's name"
    assert validity_problem(graph) is None, "an untyped product gives an untyped sum"
    bias = torch.from_numpy(bias_add.inputs[1].const_value.numpy().reshape(-1).copy())
    expected = torch.nn.functional.conv2d(quantized_x, weight * weight_scale[:, None, None, None], bias, padding=1)
    expected = (expected + quantized_x).numpy()
    got = run_model(graph, {"x": x})["y"]
    np.testing.assert_allclose(got, expected, rtol=0, atol=INT8_REL_TOL * float(np.abs(expected).max()))


DEFAULT_LEVELS = 64 if this_cpu().int8_saturates else 127  # optimize/precision/flavours.py: default_weight_range


@pytest.mark.parametrize(("weight_range", "levels"), [(None, DEFAULT_LEVELS), ("safe", 64), ("full", 127)])
def test_weights_round_to_the_nearest_step_per_channel(rng, weight_range, levels):
    """s_c = max|W_c| / L with L = 64 for the safe range and 127 for the full one (the default unless this CPU's int8
    saturates); every channel's largest weight lands on ±L and every weight within half a step."""
    graph = residual_conv(rng)
    weight = graph.graph.initializers["w"].const_value.numpy()
    insert_qdq(graph, {"x": TensorRange(1.0, -1.0, 1.0)}, "trt", set(), weight_range)
    dq = next(n for n in graph.graph if n.op_type == "Conv").inputs[1].producer()
    values, scale = dq.inputs[0].const_value.numpy(), dq.inputs[1].const_value.numpy()
    np.testing.assert_allclose(scale, np.abs(weight).max(axis=(1, 2, 3)) / levels, rtol=1e-6)
    error = np.abs(values * scale[:, None, None, None] - weight)
    assert (error <= scale[:, None, None, None] / 2 * (1 + 1e-5)).all()
    assert (np.abs(values).reshape(4, -1).max(axis=1) == levels).all()


def test_ort_activation_parameters_cover_the_range_with_zero_exact():
    relu = activation_scale(TensorRange(amax=6.0, minimum=0.0, maximum=7.5), "ort")
    assert relu == (np.float32(6.0 / 255), 0), "a Relu output: [0, amax], zero point 0 (Q saturation = Relu)"
    scale, zero_point = activation_scale(TensorRange(amax=4.0, minimum=-1.0, maximum=9.0), "ort")
    assert scale == np.float32(5.0 / 255) and zero_point == 51  # [−1, 4]: −lo/s = 51
    assert activation_scale(TensorRange(amax=4.0, minimum=-1.0, maximum=9.0), "trt") == (np.float32(4 / 127), 0)


def calibration_of(graph: ir.Model, inputs: np.ndarray):
    data = DataSource("test inputs", len(inputs), lambda start, stop: inputs[start:stop])
    return collect(graph, "", data, 4)


def overflowing_chain(seed: int, gain: float) -> ir.Model:
    """Conv → ×gain → Conv → ×(1/gain): exact in FP32; its middle activations leave FP16's range for large gain.
    The same seed builds the same weights."""
    rng = np.random.default_rng(seed)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="conv1"),
             helper.make_node("Mul", ["a", "gain"], ["b"], name="scale_up"),
             helper.make_node("Conv", ["b", "w2"], ["c"], name="conv2"),
             helper.make_node("Mul", ["c", "inverse"], ["y"], name="scale_down")]
    weights = {"w1": rng.normal(0, 1, (8, 3, 1, 1)), "w2": rng.normal(0, 1, (8, 8, 1, 1)),
               "gain": np.array(gain), "inverse": np.array(1 / gain)}
    return model(nodes, [tensor_input("x", ["N", 3, 5, 5])], ["y"], weights)


def test_fp16_keeps_out_of_range_nodes_fp32(rng):
    seed = int(rng.integers(2**32))
    x = rng.normal(0, 10, (8, 3, 5, 5)).astype(np.float32)
    gain = 4000.0  # a weight FP16 holds (< SAFE_FP16_MAX), activations it cannot: std(b) ≈ 7e4 > 65504
    reference = run_model(overflowing_chain(seed, gain), {"x": x})["y"]
    guarded = overflowing_chain(seed, gain)
    amax = calibration_of(guarded, x).ranges("minmax", 100)
    report = convert_to_fp16(guarded, amax, set())
    assert set(report.fp32_nodes) == {"scale_up", "conv2", "scale_down"}, report.fp32_nodes
    assert all(f"{SAFE_FP16_MAX:.4g}" in reason for reason in report.fp32_nodes.values())
    got = run_model(guarded, {"x": x})["y"]
    assert compare({"y": reference}, {"y": got}, TOLERANCES["fp16"]).ok
    unguarded = overflowing_chain(seed, gain)
    convert_to_fp16(unguarded, None, set())
    stored = run_session(reference_session(exposing(unguarded, activation_names(unguarded))), {"x": x})
    assert not np.isfinite(stored["b"]).all(), "without the ranges, the FP16 tensor b overflows when stored"


def test_fp16_types_casts_and_kept_nodes(rng):
    seed = int(rng.integers(2**32))
    graph = overflowing_chain(seed, 2.0)
    report = convert_to_fp16(graph, None, {"conv2"})
    assert report.fp32_nodes == {"conv2": "kept by the user"}
    nodes = {n.name: n for n in graph.graph}
    assert nodes["conv1"].inputs[1].dtype == ir.DataType.FLOAT16 and nodes["conv2"].inputs[1].dtype == ir.DataType.FLOAT
    assert graph.graph.inputs[0].dtype == ir.DataType.FLOAT and graph.graph.outputs[0].dtype == ir.DataType.FLOAT
    assert graph.graph.outputs[0].name == "y"
    assert report.casts == 4  # x → fp16, b → fp32 for conv2, c → fp16, y's FP16 value → the FP32 output
    x = rng.normal(0, 1, (2, 3, 5, 5)).astype(np.float32)
    expected = run_model(overflowing_chain(seed, 2.0), {"x": x})["y"]
    assert compare({"y": expected}, run_model(graph, {"x": x}), TOLERANCES["fp16"]).ok
    io = overflowing_chain(seed, 2.0)
    convert_to_fp16(io, None, set(), fp16_io=True)
    assert io.graph.inputs[0].dtype == io.graph.outputs[0].dtype == ir.DataType.FLOAT16
    assert run_model(io, {"x": x.astype(np.float16)})["y"].dtype == np.float16


@pytest.mark.parametrize("name", [p for p in ZOO_PARAMS if getattr(p, "values", (p,))[0] != "digits_resnet"])
def test_fp16_zoo_matches_torch_and_every_zoo_file_for_tensorrt_lints_clean(name, exported):
    """Every zoo model, converted to FP16, against its golden torch outputs within the FP16 tolerance; its FP32
    export, its FP16 file and a `trt` Q/DQ file of it (placement only: unit ranges, no calibration) pass TensorRT
    10.0's, 10.16's and 11.1's parser rules."""
    result = exported(name)
    releases = ("10.0", "10.16", "11.1")
    assert lint_model(load_model(result.onnx_path), releases).accepted
    int8 = with_types(load_model(result.onnx_path))
    insert_qdq(int8, {tensor: TensorRange(1.0, -1.0, 1.0) for tensor in activation_names(int8)}, "trt", set())
    assert lint_model(int8, releases).accepted, lint_model(int8, releases).refusals()[:3]
    graph = with_types(load_model(result.onnx_path))
    report = convert_to_fp16(graph, None, set())
    assert lint_model(graph, releases).accepted, lint_model(graph, releases).refusals()[:3]
    # a dense model's upsampling (Resize: its scales input is float32 only) stays FP32; nothing else may
    assert {why.split()[0] for why in report.fp32_nodes.values()} <= {"Resize"}
    assert not report.fp32_nodes or name == "digits_segmenter"
    golden = Golden.load(result.bundle / "golden.npz")
    parity = compare(golden.outputs, run_model(graph, golden.inputs), TOLERANCES["fp16"])
    assert parity.ok, parity.describe()


def test_nan_in_a_calibrated_tensor_is_named(tmp_path, cli, rng):
    graph = overflowing_chain(0, 1e38)  # b = a · 1e38 overflows FP32 to ±inf wherever |a| > 3.4
    source = tmp_path / "overflow.onnx"
    ir.save(graph, source)
    np.save(tmp_path / "x.npy", rng.normal(0, 10, (4, 3, 5, 5)).astype(np.float32))
    out = tmp_path / "out"
    code, _, err = cli("quantize", source, "--precision", "int8", "--calib", tmp_path / "x.npy", "-o", out / "q.onnx")
    assert code == 2 and "tensor 'b' holds NaN or Inf" in " ".join(err.split()), err
    assert files_under(out) == []


def test_ort_flavour_lets_maxpool_run_on_uint8(rng, tmp_path):
    """MaxPool's output shares its input's (scale, zero point), so ORT drops the pair and pools the U8 tensor:
    after ORT's optimizations only the graph input is quantized and no float MaxPool is left. (conv2 makes the
    graph output, which stays float, so ORT runs it as a float Conv on dequantized inputs.)"""
    import onnx

    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "w2", "b2"], ["y"], name="conv2")]
    weights = {"w1": rng.normal(0, 0.3, (8, 3, 3, 3)), "b1": rng.normal(0, 0.1, 8),
               "w2": rng.normal(0, 0.3, (4, 8, 1, 1)), "b2": rng.normal(0, 0.1, 4)}
    graph = model(nodes, [tensor_input("x", ["N", 3, 8, 8])], ["y"], weights)
    x = rng.normal(0, 1, (4, 3, 8, 8)).astype(np.float32)
    calibration = calibration_of(graph, x)
    amax = calibration.ranges("entropy", 99.99)
    insert_qdq(graph, {n: TensorRange(amax[n], s.minimum, s.maximum) for n, s in calibration.statistics.items()},
               "ort", set())
    pairs = {n.inputs[0].name: n.inputs[1:] for n in graph.graph if n.op_type == "QuantizeLinear"}
    assert [v.name for v in pairs["p"]] == [v.name for v in pairs["r"]]
    ir.save(graph, tmp_path / "pool.onnx")
    ort_session(tmp_path / "pool.onnx", "all", optimized_model_path=tmp_path / "optimized.onnx")
    ops = [node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node]
    assert ops.count("QuantizeLinear") == 1 and "MaxPool" not in ops and "NhwcMaxPool" in ops, ops


def dead_activation(path, level: float, rng: np.random.Generator) -> np.ndarray:
    """x → Conv(W = 0, b = level) → Relu → `dead` (= level everywhere) → Conv(W2, b2) → GAP → Flatten: downstream of a
    tensor that is `level` on every sample, the float output is b2 (+ W2·level). Returns b2."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1"),
             helper.make_node("Relu", ["h"], ["dead"], name="relu"),
             helper.make_node("Conv", ["dead", "w2", "b2"], ["y"], name="conv2"),
             helper.make_node("GlobalAveragePool", ["y"], ["pooled"], name="gap"),
             helper.make_node("Flatten", ["pooled"], ["out"], name="flatten")]
    b2 = rng.normal(0, 1, 5)
    ir.save(model(nodes, [tensor_input("x", ["N", 4, 8, 8])], ["out"],
                  {"w1": np.zeros((8, 4, 1, 1)), "b1": np.full(8, level), "w2": rng.normal(0, 0.3, (5, 8, 1, 1)),
                   "b2": b2}), path)
    return b2.astype(np.float32)


@pytest.mark.parametrize("level", [0.0, 1e-41, 1e-30], ids=["zero", "denormal", "tiny"])
@pytest.mark.parametrize(("flavour", "float_dtype"), [("trt", "fp16"), ("trt", "fp32"), ("ort", "fp32")])
def test_a_dead_activation_keeps_the_downstream_bias(tmp_path, cli, rng, flavour, float_dtype, level):
    """An activation that is 0 on every calibration sample gets a usable scale and a warning naming it; one so small
    its scale would be denormal or tiny keeps its reader float, named with the reason; either way the bias after it
    survives: the `ort` flavour's INT32 bias
    b / (s_x · s_w) once overflowed, and its fused outputs collapsed to 0; with FP16 float parts, ORT's own
    WeightBiasQuantization divided b by an s_x · s_w that underflows FP16 (runtime/core/ort_session.py)."""
    b2 = dead_activation(tmp_path / "dead.onnx", level, rng)
    np.save(tmp_path / "calib.npy", rng.uniform(0, 1, (16, 4, 8, 8)).astype(np.float32))
    code, out, err = cli("quantize", tmp_path / "dead.onnx", "--precision", "int8", "--calib", tmp_path / "calib.npy",
                         "--flavour", flavour, "--float-dtype", float_dtype,
                         "-o", tmp_path / f"dead.int8-{flavour}.onnx")
    assert code == 0, err
    if level == 0:
        assert "warning: tensor 'dead' has no usable calibrated range" in " ".join(out.split())
    else:  # every value would round to 0 at the floor scale: conv2 reads `dead` in float, exactly
        assert "float conv2: its input 'dead' has calibrated range" in " ".join(out.split())
    x = rng.uniform(0, 1, (3, 4, 8, 8)).astype(np.float32)
    for level_name in ("none", "all"):  # the file's own Q/DQ math, and ORT's fused kernels
        got = ort_session(tmp_path / f"dead.int8-{flavour}.onnx", level_name).run(None, {"x": x})[0]
        np.testing.assert_allclose(got, np.broadcast_to(b2, got.shape), atol=0.02 * np.abs(b2).max())


def gemm(batch: int | str, n: int, k: int, op: str = "Gemm") -> ir.Node:
    """One Gemm (transB, as torch's Linear exports) or MatMul of a [batch, k] input by a constant weight."""
    weight = np.zeros((n, k) if op == "Gemm" else (k, n))
    node = helper.make_node(op, ["x", "w"], ["y"], name="fc", **({"transB": 1} if op == "Gemm" else {}))
    graph = model([node], [tensor_input("x", [batch, k])], ["y"], {"w": weight})
    return next(iter(graph.graph))


def test_small_gemms_stay_float_in_the_trt_flavour():
    """Model Optimizer's rule: N or K < 16, or a GEMV (M = 1 in a fixed shape); a dynamic batch is not a GEMV."""
    assert small_gemm(gemm("N", 1000, 2048)) is None
    assert small_gemm(gemm("N", 1000, 2048, "MatMul")) is None
    assert "N = 10 < 16" in small_gemm(gemm("N", 10, 64))
    assert "K = 8 < 16" in small_gemm(gemm("N", 32, 8, "MatMul"))
    assert "GEMV" in small_gemm(gemm(1, 1000, 2048))
    graph = model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)],
                  [tensor_input("x", ["N", 64])], ["y"], {"w": np.ones((10, 64)), "b": np.zeros(10)})
    report = insert_qdq(graph, {"x": TensorRange(1.0, -1.0, 1.0)}, "trt", set())
    assert report.activations == report.weights == 0 and "N = 10 < 16" in report.float_nodes["fc"]
    ort = model([helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1)],
                [tensor_input("x", ["N", 64])], ["y"], {"w": np.ones((10, 64)), "b": np.zeros(10)})
    assert insert_qdq(ort, {"x": TensorRange(1.0, -1.0, 1.0)}, "ort", set()).weights == 1, "a rule of TensorRT's"


def test_fp16_float_parts_of_an_int8_graph(rng):
    """convert_to_fp16 on a Q/DQ graph: opset raised to 19, FP16 scales, casts only at the I/O, the ORT result
    within FP16 rounding of the FP32 Q/DQ graph's; an INT32 bias (the `ort` flavour) keeps its DequantizeLinear FP32."""
    x = rng.normal(0, 1, (3, 4, 6, 6)).astype(np.float32)
    ranges = {"x": TensorRange(float(np.abs(x).max()), float(x.min()), float(x.max()))}
    graph = residual_conv(rng)
    insert_qdq(graph, ranges, "trt", set())
    expected = run_model(graph, {"x": x})["y"]
    report = convert_to_fp16(graph, None, set())
    assert graph.opset_imports[""] == 19 and report.fp32_nodes == {} and report.casts == 2
    scales = [n.inputs[1] for n in graph.graph if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert scales and all(v.dtype == ir.DataType.FLOAT16 for v in scales)
    got = run_model(graph, {"x": x})["y"]
    assert compare({"y": expected}, {"y": got}, TOLERANCES["fp16"]).ok
    mixed = residual_conv(rng)  # conv kept FP32 while the Add beside it, reading the same Q/DQ of x, is FP16
    insert_qdq(mixed, ranges, "trt", set())
    expected = run_model(mixed, {"x": x})["y"]
    report = convert_to_fp16(mixed, None, {"conv"})
    readers = {n.name: n.inputs[{"conv": 0, "add": 1}[n.name]].producer() for n in mixed.graph
               if n.name in ("conv", "add")}  # both read x
    assert [readers[name].op_type for name in ("conv", "add")] == ["DequantizeLinear"] * 2, "DQ split, no Cast"
    assert [readers[name].outputs[0].dtype for name in ("conv", "add")] == [ir.DataType.FLOAT, ir.DataType.FLOAT16]
    assert trt_violations(mixed, fp32_nodes=report.fp32_nodes) == [], report
    assert compare({"y": expected}, {"y": run_model(mixed, {"x": x})["y"]}, TOLERANCES["fp16"]).ok
    ort = residual_conv(rng)
    calibration = calibration_of(ort, x)
    amax = calibration.ranges("minmax", 100)
    insert_qdq(ort, {n: TensorRange(amax[n], st.minimum, st.maximum) for n, st in calibration.statistics.items()},
               "ort", set())
    kept = convert_to_fp16(ort, None, set()).fp32_nodes
    assert list(kept) == ["conv/bias/DequantizeLinear"] and "INT32 bias" in kept["conv/bias/DequantizeLinear"]


@pytest.mark.parametrize("flavour", ["trt", "ort"])
def test_an_untrained_net_of_vanishing_activations_keeps_its_values(tmp_path, cli, rng, flavour):
    """Activations of ~1e-8 (as deep in an untrained network: mobilenet_v3_large's outputs are ~1e-9) need scales
    below MIN_SCALE. At the floor scale every one rounded to 0 and the output was the last bias alone (1.00 × max|ref|
    off, refused); their readers now stay float, so the INT8 file computes the float outputs."""
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="conv1"),
             helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["h2"], name="conv2"),
             helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
             helper.make_node("Conv", ["a2", "w3"], ["y"], name="conv3")]
    weights = {"w1": rng.normal(0, 0.3, (8, 4, 3, 3)), "b1": np.zeros(8), "w2": rng.normal(0, 0.5, (8, 8, 1, 1)),
               "b2": np.zeros(8), "w3": rng.normal(0, 0.5, (6, 8, 1, 1))}
    ir.save(model(nodes, [tensor_input("x", ["N", 4, 8, 8])], ["y"], weights), tmp_path / "tiny.onnx")
    np.save(tmp_path / "calib.npy", rng.uniform(0, 1e-8, (16, 4, 8, 8)).astype(np.float32))
    code, out, err = cli("quantize", tmp_path / "tiny.onnx", "--precision", "int8", "--calib", tmp_path / "calib.npy",
                         "--flavour", flavour, "--float-dtype", "fp32", "-o", tmp_path / "tiny.int8.onnx")
    assert code == 0, err
    summary = " ".join(out.split())
    assert "float conv2: its input 'a1' has calibrated range" in summary and "float conv3: its input 'a2'" in summary
    x = rng.uniform(0, 1e-8, (3, 4, 8, 8)).astype(np.float32)
    reference = ort_session(tmp_path / "tiny.onnx", "none").run(None, {"x": x})[0]
    assert np.abs(reference).max() < 1e-6
    got = ort_session(tmp_path / "tiny.int8.onnx", "none").run(None, {"x": x})[0]
    assert np.abs(got - reference).max() <= 1e-3 * np.abs(reference).max()
