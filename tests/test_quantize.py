"""`onebyone quantize` on digits_resnet: accuracy on the held-out test split (real labels) for FP32, FP16 and INT8
in both flavours and every method; the manifest; TensorRT's Q/DQ rules; ORT running the `ort` flavour quantized;
and the errors users can cause."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from onebyone.optimize.precision.calibrate import Calibration, collect
from onebyone.optimize.precision.qdq import POOLS, WEIGHTED
from onebyone.optimize.precision.ranges import METHODS
from onebyone.optimize.precision.trt_rules import trt_violations
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.manifest import read_manifest
from onebyone.runtime.bundle.onnx_file import load_model
from onebyone.runtime.bundle.sources import open_source
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.commands.main import main
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.parity.check import check_artifact
from onebyone.runtime.preflight.lint import lint_file, lint_model
from tests.formats import parse_cache
from tests.helpers import files_under

FP16_MAX_DROP = 0.0025  # accuracy points as fractions: 0.25 pt
INT8_MAX_DROP = 0.005  # 0.5 pt, for the best method of each flavour


@pytest.fixture(scope="module")
def digits_bundle(exported, tmp_path_factory) -> Path:
    """A private copy of the digits_resnet bundle with FP16 and INT8 (trt/ort × every method) beside model.onnx."""
    bundle = tmp_path_factory.mktemp("quantized") / "digits_resnet"
    shutil.copytree(exported("digits_resnet").bundle, bundle)
    source = bundle / "model.onnx"
    assert main(["quantize", str(source), "--precision", "fp16", "--calib", "digits"]) == 0
    for method in METHODS:
        for flavour in ("trt", "ort"):
            calib = "digits" if method == METHODS[0] and flavour == "trt" else str(bundle / "model.calib.json")
            assert main(["quantize", str(source), "--precision", "int8", "--calib", calib, "--method", method,
                         "--flavour", flavour, "-o", str(bundle / f"model.{method}.int8-{flavour}.onnx")]) == 0
    return bundle


def accuracy(path: Path, labelled: LabelledSet, level: str) -> float:
    session = ort_session(path, level)
    return labelled.accuracy(session.run(None, {"input": labelled.inputs})[0])


def test_accuracy_drops_on_the_held_out_split(digits_bundle):
    """FP16 and INT8 run in ORT on the 360 test images; INT8 `ort` runs with ORT's quantized kernels (all
    optimizations on), `trt` as written (its S8 Q/DQ is what TensorRT executes)."""
    labelled = LabelledSet.load(digits_bundle / "labelled.npz")
    plain, fused = "none", "all"
    fp32 = accuracy(digits_bundle / "model.onnx", labelled, plain)
    fp16 = accuracy(digits_bundle / "model.fp16.onnx", labelled, plain)
    int8 = {(method, flavour): accuracy(digits_bundle / f"model.{method}.int8-{flavour}.onnx", labelled,
                                        plain if flavour == "trt" else fused)
            for method in METHODS for flavour in ("trt", "ort")}
    print(f"fp32 {fp32:.4f}  fp16 {fp16:.4f}  " + "  ".join(f"{m}/{f} {a:.4f}" for (m, f), a in int8.items()))
    assert fp32 >= 0.97
    assert fp32 - fp16 <= FP16_MAX_DROP
    for flavour in ("trt", "ort"):
        assert fp32 - max(a for (_, f), a in int8.items() if f == flavour) <= INT8_MAX_DROP, flavour
    manifest = read_manifest(digits_bundle)
    assert manifest.artifacts["model.fp16.onnx"].parity["accuracy"] == fp16
    assert manifest.artifacts["model.entropy.int8-trt.onnx"].parity["accuracy"] == int8[("entropy", "trt")]


def test_manifest_records_how_each_file_was_made(digits_bundle):
    manifest = read_manifest(digits_bundle)
    record = manifest.artifacts["model.percentile.int8-ort.onnx"]
    assert record.precision == "int8" and record.tolerance == TOLERANCES["int8"] and record.parity["ok"]
    assert all(manifest.artifacts[f"model.{method}.int8-trt.onnx"].parity["ok"] for method in METHODS)
    made_by = record.made_by
    assert (made_by["flavour"], made_by["method"], made_by["percentile"]) == ("ort", "percentile", 99.99)
    assert made_by["calibration"]["samples"] == 180 and made_by["calibration"]["file"] == "model.calib.json"
    fp16 = manifest.artifacts["model.fp16.onnx"]
    assert fp16.precision == "fp16" and fp16.tolerance == TOLERANCES["fp16"] and fp16.made_by["fp32_nodes"] == {}
    assert manifest.artifacts["model.calib.json"].kind == "calibration"
    assert manifest.artifacts["model.calib.cache"].kind == "tensorrt-calibration-cache"


def test_calibration_file_cache_and_streaming(digits_bundle):
    """calib.json belongs to model.onnx; the TensorRT cache holds amax/127 of every tensor bit-exactly; and
    calibrating in batches of 1 gives the ranges of one batch of all 180 (within one histogram bin)."""
    calibration = Calibration.load(digits_bundle / "model.calib.json")
    model = load_model(digits_bundle / "model.onnx")
    assert calibration.samples == 180
    _, scales = parse_cache((digits_bundle / "model.calib.cache").read_text())
    header = json.loads((digits_bundle / "model.calib.json").read_text())
    ranges = calibration.ranges(header["method"], header["percentile"])  # those of the run that calibrated
    assert scales == {name: float(np.float32(amax / 127)) for name, amax in ranges.items() if amax > 0}
    one_by_one = collect(model, "", open_source("digits", (1, 8, 8), None, None, "input"), 1)
    for name, stats in calibration.statistics.items():
        other = one_by_one.statistics[name]
        assert other.top == stats.top and other.samples == stats.samples
        for method in METHODS:
            assert abs(amax(other, method) - amax(stats, method)) <= stats.bin_width, (name, method)
    weighted = {node.name for node in model.graph if node.op_type in ("Conv", "Gemm")}
    assert set(calibration.input_means) == set(one_by_one.input_means) == weighted  # the tap means, kept
    for name, means in calibration.input_means.items():
        np.testing.assert_allclose(one_by_one.input_means[name], means, rtol=1e-5, atol=1e-6)


def amax(stats, method: str) -> float:
    return Calibration("", "", 0, {"t": stats}, {}).ranges(method, 99.99)["t"]


def test_trt_flavour_follows_tensorrt_placement(digits_bundle):
    """Every trt model passes the checker; DQ outputs feed only weighted ops' data inputs, residual Add inputs and
    the global average pool; the 10-class classifier (N = 10 < 16) stays float, with its reason in the manifest;
    Relu is kept; every other weight is INT8 per output channel."""
    manifest = read_manifest(digits_bundle)
    for method in METHODS:
        name = f"model.{method}.int8-trt.onnx"
        model = ir.load(digits_bundle / name)
        float_nodes = manifest.artifacts[name].made_by["float_nodes"]
        assert list(float_nodes) == ["/fc/Gemm"] and "N = 10 < 16" in float_nodes["/fc/Gemm"]
        assert trt_violations(model, float_nodes, ()) == []
        ops = {node.op_type for node in model.graph}
        assert "Relu" in ops
        for node in model.graph:
            if node.op_type == "DequantizeLinear":
                readers = [(use.node, use.idx) for use in node.outputs[0].uses()]
                assert readers, node.name
                for reader, index in readers:
                    assert reader.op_type in {*WEIGHTED, *POOLS, "Add"}, (node.name, reader.op_type)
                    if reader.op_type == "Add":
                        other = reader.inputs[1 - index].producer()
                        if other.op_type == "Add":  # the Conv's bias, stated after it (qdq.py, _bias_as_add)
                            assert other.inputs[1].const_value is not None, other.name
                            other = other.inputs[0].producer()
                        assert other.op_type in WEIGHTED, "the Add's other input is fused in its Conv"
            if node.op_type == "GlobalAveragePool":
                assert node.inputs[0].producer().op_type == "DequantizeLinear"
            if node.op_type in WEIGHTED and node.name not in float_nodes:
                weight = node.inputs[1].producer()
                assert weight.op_type == "DequantizeLinear" and weight.inputs[0].dtype == ir.DataType.INT8
                assert weight.inputs[1].const_value.numpy().shape == (weight.inputs[0].shape[0],)
            if node.name in float_nodes:
                assert all(v.producer() is None or v.producer().op_type != "DequantizeLinear" for v in node.inputs)


def test_trt_float_parts_are_fp16_with_casts_only_at_the_io(digits_bundle, tmp_path):
    """The default trt file: opset 19, every float tensor inside FP16 (scales included), one Cast after the input
    and one before the output; --float-dtype fp32 writes the FP32 graph of opset 18 with no Cast."""
    model = ir.load(digits_bundle / "model.entropy.int8-trt.onnx")
    assert model.opset_imports[""] == 19
    casts = [node for node in model.graph if node.op_type == "Cast"]
    assert len(casts) == 2
    assert casts[0].inputs[0].is_graph_input() and casts[1].outputs[0].is_graph_output()
    io = {*model.graph.inputs, *model.graph.outputs, casts[0].inputs[0], casts[1].outputs[0]}
    values = [*model.graph.initializers.values(), *(v for node in model.graph for v in node.outputs)]
    floats = [v for v in values if v.dtype in (ir.DataType.FLOAT, ir.DataType.FLOAT16)]
    assert floats and all(v.dtype == ir.DataType.FLOAT16 for v in floats if v not in io)
    made_by = read_manifest(digits_bundle).artifacts["model.entropy.int8-trt.onnx"].made_by
    assert made_by["float_dtype"] == "fp16" and made_by["float_parts"]["fp32_nodes"] == {}
    output = tmp_path / "fp32.onnx"
    assert main(["quantize", str(digits_bundle / "model.onnx"), "--precision", "int8", "--calib",
                 str(digits_bundle / "model.calib.json"), "--float-dtype", "fp32", "-o", str(output)]) == 0
    fp32 = ir.load(output)
    assert fp32.opset_imports[""] == 18 and not any(node.op_type == "Cast" for node in fp32.graph)
    assert not any(v.dtype == ir.DataType.FLOAT16 for node in fp32.graph for v in node.outputs)
    assert trt_violations(fp32, ["/fc/Gemm"]) == []


RESNET50_TRT_PLACEMENT = {  # docs/precision.md tabulates these
    "Q reads": {"Cast": 1, "MaxPool": 1, "Relu": 48, "Add": 4, "Flatten": 1},
    "DQ (activation) feeds": {"Conv:0": 53, "Add:1": 16, "GlobalAveragePool:0": 1, "Gemm:0": 1},
    "DQ (INT8 weight) feeds": {"Conv:1": 53, "Gemm:1": 1},
    # Add:0: the 16 residual Adds' fused inputs and the 54 bias Adds after the quantized Convs and the Gemm
    "float read": {"Relu:0": 49, "Add:0": 70, "MaxPool:0": 1, "Flatten:0": 1, "Cast:0": 2},
}


def qdq_placement(model: ir.Model) -> dict[str, dict[str, int]]:
    """Where the Q/DQ sit, counted: the op each QuantizeLinear quantizes, the `op:input` each DequantizeLinear
    (activation or weight) feeds, and the `op:input` of every other node input that is a non-constant float
    tensor read without a DequantizeLinear."""
    counts: dict[str, Counter[str]] = {key: Counter() for key in RESNET50_TRT_PLACEMENT}
    for node in model.graph:
        if node.op_type == "QuantizeLinear":
            counts["Q reads"][node.inputs[0].producer().op_type] += 1
            continue
        if node.op_type == "DequantizeLinear":
            continue
        for index, value in enumerate(node.inputs):
            producer = value.producer() if value is not None else None
            if producer is not None and producer.op_type == "DequantizeLinear":
                weight = producer.inputs[0].const_value is not None
                counts["DQ (INT8 weight) feeds" if weight else "DQ (activation) feeds"][f"{node.op_type}:{index}"] += 1
            elif value is not None and value.const_value is None and value.dtype in (ir.DataType.FLOAT,
                                                                                     ir.DataType.FLOAT16):
                counts["float read"][f"{node.op_type}:{index}"] += 1
    return {key: dict(counter) for key, counter in counts.items()}


def test_resnet50_trt_placement(exported, tmp_path):
    """ResNet-50, `trt` flavour: the Q/DQ placement docs/precision.md tabulates — all 53 convs and the 1000-class
    classifier (K = 2048, N = 1000) INT8 with per-channel weights, the 16 residual Add inputs (4 of them downsample
    conv outputs), MaxPool's output and the global average pool's input quantized; Relu and the Adds' fused inputs
    read float; FP16 float parts with one Cast at each end."""
    source = tmp_path / "model.onnx"
    shutil.copy(exported("resnet50").onnx_path, source)
    output = tmp_path / "model.int8-trt.onnx"
    assert main(["quantize", str(source), "--precision", "int8", "--calib", "random", "--calib-samples", "8",
                 "-o", str(output)]) == 0
    model = ir.load(output)
    assert qdq_placement(model) == RESNET50_TRT_PLACEMENT
    assert trt_violations(model, (), ()) == []
    started = time.perf_counter()
    lint = lint_file(output, ["10.0", "10.16", "11.1"])
    assert time.perf_counter() - started < 2.0, "lint of a ResNet-50 INT8 file takes under 2 s"
    assert lint.accepted and all(not v.warnings for v in lint.verdicts), lint.record()


def test_files_for_tensorrt_are_linted_when_written_and_the_manifest_says_for_which_releases(digits_bundle):
    """FP16 and `trt` INT8 files pass the default releases' parser rules when written (a refusal writes nothing);
    the `ort` INT8 file is for ONNX Runtime and OpenVINO, and TensorRT would refuse it (UINT8, INT32 bias)."""
    artifacts = read_manifest(digits_bundle).artifacts
    for name in ("model.fp16.onnx", *(f"model.{method}.int8-trt.onnx" for method in METHODS)):
        assert artifacts[name].tensorrt_lint["versions"] == ["10.16", "11.1"], name
        assert lint_model(load_model(digits_bundle / name)).accepted, name
    ort = f"model.{METHODS[0]}.int8-ort.onnx"
    assert artifacts[ort].tensorrt_lint is None
    assert not lint_model(load_model(digits_bundle / ort)).accepted


def const(name: str, array: np.ndarray) -> ir.Value:
    array = np.asarray(array)
    return ir.Value(name=name, const_value=ir.tensor(array), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)))


def test_trt_checker_catches_each_broken_rule(digits_bundle):
    """The flavour's conventions (trt_violations) and the parser's rules (lint, both default releases) each see
    a mutation of the digits `trt` file that breaks them."""
    path = digits_bundle / "model.entropy.int8-trt.onnx"
    half = np.float16
    conventions = {
        "zero point is UINT8, not INT8": lambda q, m: q.replace_input_with(2, const("u8", np.array(0, np.uint8))),
        "scale is not a constant": lambda q, m: q.replace_input_with(1, m.graph.inputs[0]),
        "no zero point": lambda q, m: q.resize_inputs(2),
        "scale is FLOAT but the float side is FLOAT16": lambda q, m: q.replace_input_with(
            1, const("f32", np.float32(0.1))),
        "scale is DOUBLE, not FLOAT or FLOAT16": lambda q, m: q.replace_input_with(1, const("f64", np.float64(0.1))),
    }
    parser = {
        "`y_zero_point` must be 0": lambda q, m: q.replace_input_with(2, const("zp3", np.array(3, np.int8))),
        "all scale coefficients must be strictly positive": lambda q, m: q.replace_input_with(
            1, const("neg", half(-0.1))),
    }
    for message, mutate in conventions.items():
        model = ir.load(path)
        quantize = next(n for n in model.graph if n.op_type == "QuantizeLinear")
        mutate(quantize, model)
        assert any(message in problem for problem in trt_violations(model, ["/fc/Gemm"], ())), message
    for message, mutate in parser.items():
        model = ir.load(path)
        quantize = next(n for n in model.graph if n.op_type == "QuantizeLinear")
        mutate(quantize, model)
        refusals = lint_model(model).refusals()
        assert any(message in problem for problem in refusals) and all(
            any(problem.startswith(f"TensorRT {v}:") for problem in refusals) for v in ("10.16", "11.1")), message
        assert trt_violations(model, ["/fc/Gemm"], ()) == [], "one place for each rule"
    model = ir.load(path)
    activation_dq = next(n for n in model.graph if n.op_type == "DequantizeLinear"
                         and n.inputs[0].producer() is not None)
    weight_dq = next(n for n in model.graph if n.op_type == "DequantizeLinear" and n.inputs[0].producer() is None)
    activation_dq.replace_input_with(1, weight_dq.inputs[1])
    assert any("per-channel quantization is supported only for weight inputs" in p
               for p in lint_model(model).refusals())


def test_trt_checker_catches_misplaced_qdq(digits_bundle):
    """Placement: a pool or a Conv reading float, the small classifier reading a DQ, a Cast inside the network."""
    path = digits_bundle / "model.entropy.int8-trt.onnx"

    def reading_float(op_type: str) -> list[str]:
        model = ir.load(path)
        node = next(n for n in model.graph if n.op_type == op_type)
        node.replace_input_with(0, node.inputs[0].producer().inputs[0].producer().inputs[0])  # skip the Q/DQ pair
        return trt_violations(model, ["/fc/Gemm"], ())

    assert any("GlobalAveragePool: its input is not read through DequantizeLinear" in p
               for p in reading_float("GlobalAveragePool"))
    assert any("Conv: input 0 is not read through DequantizeLinear" in p for p in reading_float("Conv"))
    model = ir.load(path)
    gemm, pool = (next(n for n in model.graph if n.op_type == op) for op in ("Gemm", "GlobalAveragePool"))
    gemm.replace_input_with(0, pool.inputs[0])  # a DequantizeLinear output
    assert any("/fc/Gemm: quantized although N = 10 < 16" in p for p in trt_violations(model))
    model = ir.load(path)
    relu = next(n for n in model.graph if n.op_type == "Relu")
    cast = ir.node("Cast", [relu.outputs[0]], {"to": ir.DataType.FLOAT16}, name="inner/Cast")
    cast.outputs[0].dtype = ir.DataType.FLOAT16
    model.graph.insert_after(relu, cast)
    assert any("inner/Cast: a Cast inside the network" in p for p in trt_violations(model, ["/fc/Gemm"], ()))
    assert trt_violations(model, ["/fc/Gemm"], [relu.name]) == [], "a Cast serving an FP32-kept node is allowed"


def test_ort_flavour_runs_on_quantized_kernels(digits_bundle, tmp_path):
    """ORT (all optimizations) turns every Conv into QLinearConv, the residual Adds into QLinearAdd and the
    classifier into QGemm: no float Conv/Add/Gemm is left."""
    ort_session(digits_bundle / "model.entropy.int8-ort.onnx", "extended",
                optimized_model_path=tmp_path / "optimized.onnx")
    ops = [node.op_type for node in onnx.load(tmp_path / "optimized.onnx").graph.node]
    source_ops = [node.op_type for node in onnx.load(digits_bundle / "model.onnx").graph.node]
    assert ops.count("QLinearConv") == source_ops.count("Conv")
    assert ops.count("QLinearAdd") == source_ops.count("Add") and ops.count("QGemm") == source_ops.count("Gemm")
    assert not {"Conv", "Add", "Gemm", "FusedConv"} & set(ops)


def test_exclude_keeps_a_node_float(digits_bundle, tmp_path):
    conv = next(n.name for n in ir.load(digits_bundle / "model.onnx").graph if n.op_type == "Conv")
    output = tmp_path / "excluded.onnx"
    assert main(["quantize", str(digits_bundle / "model.onnx"), "--precision", "int8", "--calib",
                 str(digits_bundle / "model.calib.json"), "--exclude", conv, "-o", str(output)]) == 0
    node = next(n for n in ir.load(output).graph if n.name == conv)
    assert node.inputs[0].producer().op_type == "Cast", "reads the FP16 input, not a DequantizeLinear"
    assert node.inputs[1].dtype == ir.DataType.FLOAT16 and node.inputs[1].const_value is not None


@pytest.mark.parametrize(("args", "message"), [
    (["--precision", "int8"], "--precision int8 needs calibration data"),
    (["--precision", "int8", "--calib", "nowhere.npy"], "unknown data source 'nowhere.npy' (no such file or folder)"),
    (["--precision", "int8", "--calib", "random", "--exclude", "conv9000"], "no node named conv9000"),
    (["--precision", "int8", "--calib", "random", "--percentile", "0"], "--percentile 0.0 is outside (0, 100]"),
    (["--precision", "int8", "--calib", "random", "--flavour", "ort", "--float-dtype", "fp16"],
     "ONNX Runtime's CPU kernels fuse only FP32 Q/DQ"),
    (["--precision", "int8", "--calib", "random", "--float-dtype", "fp32", "--fp16-io"],
     "--fp16-io needs FP16 float parts"),
    (["--precision", "fp16", "--float-dtype", "fp16"], "--float-dtype applies to --precision int8"),
])
def test_user_errors_exit_2_and_write_nothing(args, message, digits_bundle, tmp_path, cli):
    out = tmp_path / "out"
    code, _, err = cli("quantize", digits_bundle / "model.onnx", "-o", out / "q.onnx", *args)
    assert code == 2 and message in " ".join(err.split()), err
    assert files_under(out) == []


def test_wrong_calibration_data_exits_2(digits_bundle, tmp_path, cli):
    np.save(tmp_path / "rgb.npy", np.zeros((4, 3, 8, 8), np.float32))
    (tmp_path / "empty").mkdir()
    other = tmp_path / "other.calib.json"
    shutil.copy(digits_bundle / "model.calib.json", other)
    other.write_text(other.read_text().replace(Calibration.load(other).model_sha256, "0" * 64))
    for source, message in ((tmp_path / "rgb.npy", "have 3 channels; the model takes 1"),
                            (tmp_path / "empty", "holds no .png/.jpg/.jpeg images"),
                            (other, "was made for another model")):
        out = tmp_path / "out"
        code, _, err = cli("quantize", digits_bundle / "model.onnx", "-o", out / "q.onnx", "--precision", "int8",
                           "--calib", source)
        assert code == 2 and message in " ".join(err.split()), err
        assert files_under(out) == []


def test_golden_check_rejects_saturating_ranges(digits_bundle, tmp_path):
    """The INT8 tolerance is loose, but not blind: activation ranges a quarter of the calibrated ones (scales / 4,
    so most activations saturate) fail it, while the calibrated model passes."""
    golden = Golden.load(digits_bundle / "golden.npz")
    source = digits_bundle / "model.entropy.int8-trt.onnx"
    assert check_artifact(source, golden, TOLERANCES["int8"]).ok
    checks = {}
    for factor in (0.25, 4.0):  # the second, coarse but not saturating, is only reported (README)
        model = ir.load(source)
        for node in model.graph:
            if node.op_type == "QuantizeLinear":
                scale = node.inputs[1].const_value.numpy()
                node.inputs[1].const_value = ir.tensor((scale * factor).astype(scale.dtype))
        ir.save(model, tmp_path / f"scaled-{factor}.onnx")
        checks[factor] = check_artifact(tmp_path / f"scaled-{factor}.onnx", golden, TOLERANCES["int8"])
        print(f"activation scales x{factor}: {checks[factor].describe()}")
    assert not checks[0.25].ok


def test_either_flavour_calibrates_alone_and_the_other_reuses_it(exported, tmp_path, cli):
    """The `ort` flavour run first (or alone: the `trt` run was refused) calibrates by itself; a later run on the same
    model and data reuses that calib.json instead of calibrating again — and other data calibrates anew."""
    bundle = shutil.copytree(exported("digits_resnet").bundle, tmp_path / "bundle")
    code, out, err = cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits",
                         "--flavour", "ort")
    assert code == 0, err + out
    assert "calibration: 180 samples" in out and (bundle / "model.calib.json").is_file()
    code, out, err = cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits",
                         "--flavour", "trt")
    assert code == 0, err + out
    assert "this model, this data" in out
    code, out, err = cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits",
                         "--calib-samples", "50", "--flavour", "trt", "-o", bundle / "model.fifty.onnx")
    assert code == 0 and "calibration: 50 samples" in out, err + out


@pytest.mark.parametrize(("name", "flavours", "verify"), [
    ("squeezenet1_1", ("trt", "ort"), True), pytest.param("densenet121", ("trt",), False, marks=pytest.mark.slow)])
def test_concat_networks_verify_on_their_default_engines(name, flavours, verify, bundle_copy, cli):
    """The 1x1 family's Concat members (Fire modules, DenseNet-B): INT8 files of the optimized model pass verify, the
    kernel check included, on the engine `auto` opens each on — an engine whose kernel check failed on this CPU is
    reported and not used (runtime/sessions/engine_checks.py; docs/openvino.md says which and why). DenseNet-121's
    `trt` file is the one OpenVINO departs from (its `ort` file, checked by hand, passes on both engines)."""
    bundle = bundle_copy(name)
    assert cli("optimize", bundle / "model.onnx", "--target", "trt")[0] == 0
    for flavour in flavours:
        code, out, err = cli("quantize", bundle / "model.opt.onnx", "--precision", "int8", "--calib", "random",
                             "--calib-samples", "8", "--flavour", flavour)
        assert code == 0, err + out
    if verify:  # DenseNet-121: quantize's own checks (golden, stock consumers, kernel checks) only; verify repeats
        code, out, err = cli("verify", bundle)  # them, and on 2 cores that is a minute
        assert code == 0, err + out
    for flavour in flavours:
        record = read_manifest(bundle).artifacts[f"model.opt.int8-{flavour}.onnx"]
        assert record.kernel_checks and record.kernel_checks[this_cpu().cpu_class]["onnxruntime"]["ok"]
    for line in out.splitlines():
        if "kernel check FAIL" in line:
            assert "not used by auto here" in line, out
