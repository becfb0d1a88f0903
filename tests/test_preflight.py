"""`onebyone lint`: TensorRT's parser rules checked without TensorRT. Each rule family has a file the rule refuses and
one it accepts, built here with onnx.helper; the verdict names the node, the op, the rule and its source."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from onebyone.runtime.commands.main import main
from onebyone.runtime.preflight.lint import Lint, lint_model
from onebyone.runtime.preflight.operators import tables_for

F, F16, BF16, U8, I8, I32, I64 = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.UINT8,
                                  TensorProto.INT8, TensorProto.INT32, TensorProto.INT64)
BOTH = ("10.16", "11.1")


def graph(nodes: list[onnx.NodeProto], inputs: dict[str, tuple[int, list]], outputs: dict[str, int],
          initializers: dict[str, np.ndarray] | None = None, opset: int = 18,
          domains: dict[str, int] | None = None, check: bool = True) -> ir.Model:
    """A checked, shape-inferred model: inputs name → (type, shape), outputs name → type. (The checker wants a
    shape on every output type; `check=False` where inference cannot give one.)"""
    proto = helper.make_model(
        helper.make_graph(nodes, "lint", [helper.make_tensor_value_info(n, t, s) for n, (t, s) in inputs.items()],
                          [helper.make_tensor_value_info(n, t, None) for n, t in outputs.items()],
                          [numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()]),
        opset_imports=[helper.make_opsetid("", opset),
                       *(helper.make_opsetid(d, v) for d, v in (domains or {}).items())])
    proto.ir_version = 10
    proto = onnx.shape_inference.infer_shapes(proto)
    if check and not domains:
        onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def rules(lint: Lint, version: str, warnings: bool = False) -> list[str]:
    verdict = next(v for v in lint.verdicts if v.tensorrt == version)
    return [f"{p.node} {p.rule}" for p in (verdict.warnings if warnings else verdict.problems)]


def refused_by(model: ir.Model, versions: tuple[str, ...] = BOTH) -> dict[str, list[str]]:
    lint = lint_model(model, versions)
    return {v: rules(lint, v) for v in versions}


def accepted(model: ir.Model, versions: tuple[str, ...] = BOTH) -> bool:
    return lint_model(model, versions).accepted


def relu(opset: int) -> ir.Model:
    return graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], {"x": (F, [1, 4])}, {"y": F}, opset=opset)


def test_the_opset_range_is_each_releases():
    """TensorRT 10.0's parser reads opsets 9–20, 10.16's and 11.1's 9–24 (operators.md at each pin)."""
    assert accepted(relu(20), ("10.0", *BOTH))
    lint = lint_model(relu(21), ("10.0", *BOTH))
    assert rules(lint, "10.0") == [" the default-domain opset must be in 9..20"]
    assert rules(lint, "10.16") == rules(lint, "11.1") == []
    problem = lint.verdicts[0].problems[0]
    assert "eb43908b02a2" in problem.source and "version_converter" in problem.fix


def test_an_operator_without_importer_is_refused_with_the_tables_note():
    quantize = graph([helper.make_node("DynamicQuantizeLinear", ["x"], ["q", "s", "z"], name="dq")],
                     {"x": (F, [1, 4])}, {"q": U8, "s": F, "z": U8})
    lint = lint_model(quantize, BOTH)
    problem = lint.verdicts[1].problems[0]
    assert (problem.node, problem.op) == ("dq", "DynamicQuantizeLinear")
    assert problem.rule == "TensorRT 11.1 has no importer for DynamicQuantizeLinear"
    assert "model local function" in problem.fix and "7c51a63a7191" in problem.source
    swish = graph([helper.make_node("Swish", ["x"], ["y"], name="swish")], {"x": (F, [1, 4])}, {"y": F}, opset=24)
    assert refused_by(swish) == {"10.16": ["swish TensorRT 10.16 has no importer for Swish"], "11.1": []}


def test_an_operator_of_another_domain_needs_a_plugin():
    custom = graph([helper.make_node("QLinearAdd", ["a", "s", "z", "a", "s", "z", "s", "z"], ["y"], name="qadd",
                                     domain="com.microsoft")],
                   {"a": (U8, [1, 4])}, {"y": U8},
                   {"s": np.float32(0.1), "z": np.uint8(0)}, domains={"com.microsoft": 1})
    assert refused_by(custom)["11.1"] == ["qadd no importer for operators of domain 'com.microsoft'"]


def test_types_are_the_tables():
    """Mish: FP32 and FP16 only (no BF16, which ONNX allows from opset 22); DOUBLE is cast down with a warning."""
    def mish(dtype: int) -> ir.Model:
        return graph([helper.make_node("Mish", ["x"], ["y"], name="mish")], {"x": (dtype, [1, 4])}, {"y": dtype},
                     opset=22)
    assert accepted(mish(F16))
    assert refused_by(mish(BF16))["11.1"] == ["mish Mish supports FP32, FP16"]
    double = graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], {"x": (TensorProto.DOUBLE, [2])},
                   {"y": TensorProto.DOUBLE})
    lint = lint_model(double, BOTH)
    assert lint.accepted and rules(lint, "11.1", warnings=True) == [
        " TensorRT casts DOUBLE down to FLOAT, clamping to ±FLT_MAX"]


def test_uint8_only_at_the_networks_edges():
    inside = graph([helper.make_node("Cast", ["x"], ["u"], to=U8, name="to_u8"),
                    helper.make_node("Cast", ["u"], ["y"], to=F, name="back")], {"x": (F, [4])}, {"y": F})
    assert refused_by(inside)["10.16"] == ["to_u8 UINT8 is only supported as network input or output tensor types"]
    edge = graph([helper.make_node("Cast", ["x"], ["u"], to=U8, name="to_u8")], {"x": (F, [4])}, {"u": U8})
    assert accepted(edge)


def reduce_sum(axes_from_input: bool) -> ir.Model:
    if axes_from_input:
        return graph([helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum")],
                     {"x": (F, [2, 3]), "axes": (I64, [1])}, {"y": F}, check=False)
    return graph([helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum")], {"x": (F, [2, 3])}, {"y": F},
                 {"axes": np.array([1], np.int64)})


def test_restrictions_on_inputs_initializer_and_build_time_constant():
    assert accepted(reduce_sum(False))
    assert refused_by(reduce_sum(True))["11.1"] == ["sum `axes` must be an initializer"]
    folded = graph([helper.make_node("Add", ["a", "b"], ["axes"], name="add"),
                    helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsqueeze")],
                   {"x": (F, [2, 3])}, {"y": F}, {"a": np.array([0], np.int64), "b": np.array([1], np.int64)},
                   check=False)
    assert accepted(folded), "a constant computed from constants is known at build time"
    runtime = graph([helper.make_node("Unsqueeze", ["x", "axes"], ["y"], name="unsqueeze")],
                    {"x": (F, [2, 3]), "axes": (I64, [1])}, {"y": F}, check=False)
    assert refused_by(runtime)["10.16"] == ["unsqueeze `axes` must be resolvable to a constant"]


def top_k(sorted_: int, k: np.ndarray | None) -> ir.Model:
    inputs = {"x": (F, [1, 5000])} | ({} if k is not None else {"k": (I64, [1])})
    return graph([helper.make_node("TopK", ["x", "k"], ["v", "i"], sorted=sorted_, name="topk")], inputs,
                 {"v": F, "i": I64}, {"k": k} if k is not None else {})


def test_restrictions_on_attributes_and_input_values():
    assert accepted(top_k(1, np.array([5], np.int64)))
    assert refused_by(top_k(0, np.array([5], np.int64)))["11.1"] == ["topk `sorted` must be 1"]
    assert refused_by(top_k(1, np.array([4000], np.int64)))["11.1"] == ["topk `K` input must be less than 3840"]
    lint = lint_model(top_k(1, None), BOTH)
    assert lint.accepted and rules(lint, "11.1", warnings=True) == ["topk `K` input must be less than 3840"]


def max_pool(kernel: list[int], indices: bool = False, **attributes: object) -> ir.Model:
    rank = len(kernel) + 2
    outputs = {"y": F} | ({"i": I64} if indices else {})
    return graph([helper.make_node("MaxPool", ["x"], list(outputs), kernel_shape=kernel, name="pool", **attributes)],
                 {"x": (F, [1, 2, *[8] * (rank - 2)])}, outputs)


def test_restrictions_on_pooling_outputs_and_dilations():
    assert accepted(max_pool([2, 2]))
    assert refused_by(max_pool([2]))["11.1"] == ["pool 2D or 3D pooling only"]
    assert refused_by(max_pool([2, 2], indices=True))["11.1"] == ["pool `Indices` output tensor unsupported"]
    assert refused_by(max_pool([2, 2], dilations=[2, 2]))["11.1"] == ["pool `dilations` must be empty or all ones"]


def resize(**attributes: object) -> ir.Model:
    return graph([helper.make_node("Resize", ["x", "", "scales"], ["y"], name="resize", **attributes)],
                 {"x": (F, [1, 2, 4, 4])}, {"y": F}, {"scales": np.array([1, 1, 2, 2], np.float32)})


def test_resize_modes_come_from_the_tables_text():
    assert accepted(resize(mode="linear", coordinate_transformation_mode="align_corners"))
    assert refused_by(resize(mode="cubic"))["11.1"] == ["resize Supported resize modes: `nearest`, `linear`"]
    assert refused_by(resize(mode="linear", antialias=1))["10.16"] == ["resize Antialiasing is not supported"]
    assert refused_by(resize(coordinate_transformation_mode="tf_crop_and_resize"))["11.1"] == [
        "resize Supported resize transformation modes: `half_pixel`, `pytorch_half_pixel`, `tf_half_pixel_for_nn`, "
        "`asymmetric`, and `align_corners`"]


def test_a_random_seed_is_a_warning():
    random = graph([helper.make_node("RandomNormal", [], ["y"], shape=[2], seed=1.0, name="noise")], {}, {"y": F})
    lint = lint_model(random, BOTH)
    assert lint.accepted and rules(lint, "11.1", warnings=True) == ["noise `seed` value is ignored by TensorRT"]


def qdq(x_type: int = F, zero: np.ndarray | None = None, scale: np.ndarray | None = None, opset: int = 19,
        per_channel_activation: bool = False) -> ir.Model:
    """x → QuantizeLinear → DequantizeLinear → Conv(DQ(int8 weight)), the `trt` flavour's shape."""
    scale = np.array(0.05, np.float32) if scale is None else scale
    zero = np.array(0, np.int8) if zero is None else zero
    act_scale = np.full(2, 0.05, np.float32) if per_channel_activation else scale
    act_zero = np.zeros(2, zero.dtype) if per_channel_activation else zero
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q", **(
                 {"axis": 1} if per_channel_activation else {})),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"], name="dq", **(
                 {"axis": 1} if per_channel_activation else {})),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="w_dq", axis=0),
             helper.make_node("Conv", ["d", "wd"], ["y"], name="conv")]
    return graph(nodes, {"x": (x_type, [1, 2, 4, 4])}, {"y": x_type},
                 {"s": act_scale, "z": act_zero, "w": np.ones((3, 2, 1, 1), np.int8),
                  "ws": np.full(3, 0.01, scale.dtype), "wz": np.zeros(3, np.int8)}, opset=opset)


def test_qdq_contract():
    assert accepted(qdq(), ("10.0", *BOTH))
    assert refused_by(qdq(zero=np.array(3, np.int8)))["11.1"] == ["q `y_zero_point` must be 0",
                                                                  "dq `x_zero_point` must be zero"]
    negative = refused_by(qdq(scale=np.array(-0.05, np.float32)))["11.1"]
    assert negative == ["q all scale coefficients must be strictly positive",
                        "dq all scale coefficients must be strictly positive"]
    assert refused_by(qdq(per_channel_activation=True))["10.16"] == [
        "q per-channel quantization is supported only for weight inputs",
        "dq per-channel quantization is supported only for weight inputs"]
    unsigned = refused_by(qdq(zero=np.array(128, np.uint8)))["11.1"]
    assert "dq DequantizeLinear supports INT8, FP8, FP4, INT4" in unsigned
    assert "q UINT8 is only supported as network input or output tensor types" in unsigned


def test_a_half_scale_must_match_a_strongly_typed_input():
    """Opset 23 lets QuantizeLinear's scale differ from its input's type; TensorRT 10.16 and 11.1 (NvInfer.h)
    refuse a half scale on FP32 data in a strongly typed network."""
    mixed = graph([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                   helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")],
                  {"x": (F, [1, 4])}, {"y": F16}, {"s": np.array(0.05, np.float16), "z": np.array(0, np.int8)},
                  opset=23)
    lint = lint_model(mixed, BOTH)
    assert rules(lint, "11.1") == [
        "q in a strongly typed network a half or bf16 scale must match the data's float type"]
    assert "release/11.1" in lint.verdicts[1].problems[0].source


def test_qoperator_and_int32_bias_are_refused_with_the_fix():
    conv = graph([helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "z", "s", "z"], ["y"], name="qconv")],
                 {"x": (I8, [1, 2, 4, 4])}, {"y": I8},
                 {"s": np.array(0.1, np.float32), "z": np.array(0, np.int8), "w": np.ones((3, 2, 1, 1), np.int8)})
    problem = lint_model(conv, BOTH).verdicts[0].problems[0]
    assert problem.rule == "TensorRT 10.16 has no importer for QLinearConv" and "--flavour trt" in problem.fix
    bias = graph([helper.make_node("DequantizeLinear", ["b", "bs"], ["bias"], name="bias_dq"),
                  helper.make_node("Add", ["x", "bias"], ["y"], name="add")], {"x": (F, [1, 3])}, {"y": F},
                 {"b": np.array([5, -3, 7], np.int32), "bs": np.array(0.001, np.float32)})
    problem = lint_model(bias, BOTH).verdicts[1].problems[0]
    assert (problem.node, problem.found) == ("bias_dq", "b is INT32") and "onebyone adopt" in problem.fix


def test_a_residual_add_with_a_float_input_is_a_speed_warning():
    model = qdq()
    graph_ = model.graph
    skip = graph_.inputs[0]
    add = ir.node("Add", [graph_.outputs[0], skip], name="residual")
    conv = next(n for n in graph_ if n.op_type == "Conv")
    graph_.append(add)
    graph_.outputs[0] = add.outputs[0]
    add.outputs[0].name, add.outputs[0].dtype = "sum", ir.DataType.FLOAT
    conv.outputs[0].shape = skip.shape
    lint = lint_model(model, BOTH)
    assert lint.accepted and rules(lint, "11.1", warnings=True) == [
        "residual a residual Add whose inputs are not both quantized"]


def test_the_command_line_exit_codes_and_json(tmp_path, capsys):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    ir.save(qdq(), good)
    ir.save(qdq(zero=np.array(3, np.int8)), bad)
    assert main(["lint", str(good)]) == 0
    assert main(["lint", str(bad), "--tensorrt", "11.1", "--json", str(tmp_path / "lint.json")]) == 1
    record = json.loads((tmp_path / "lint.json").read_text())
    assert list(record["tensorrt"]) == ["11.1"] and record["tensorrt"]["11.1"]["accepted"] is False
    assert record["tensorrt"]["11.1"]["problems"][0] == {
        "node": "q", "op": "QuantizeLinear", "rule": "`y_zero_point` must be 0",
        "source": "onnx/onnx-tensorrt docs/operators.md @ 7c51a63a7191 (TensorRT 11.1)",
        "found": "`y_zero_point` holds [3]", "fix": ""}
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert main(["lint", str(tmp_path / "junk.onnx")]) == 2
    with pytest.raises(SystemExit) as exit_:
        main(["lint", str(good), "--tensorrt", "9.0"])
    assert exit_.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_build_lints_before_it_calls_the_parser(tmp_path, capsys):
    """On any machine, GPU or not: a file TensorRT would refuse stops `build` with the rule, before TensorRT."""
    bad = tmp_path / "bad.onnx"
    ir.save(qdq(zero=np.array(3, np.int8)), bad)
    assert main(["build", str(bad), "-o", str(tmp_path / "out" / "bad.plan")]) == 1
    err = capsys.readouterr().err
    assert "`y_zero_point` must be 0" in err and "nothing was built" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_build_lints_for_the_installed_releases_table():
    assert tables_for(None) == ("10.16", "11.1")
    assert [tables_for(v) for v in ("10.3.0", "10.16.1.11", "10.20", "11.4.0.106", "12.0")] == [
        ("10.0",), ("10.16",), ("10.16",), ("11.1",), ("10.16", "11.1")]
