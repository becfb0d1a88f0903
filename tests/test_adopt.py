"""Foreign Q/DQ files: what lint says of ONNX Runtime's `quantize_static` outputs and of a torch fake-quantized
(QAT-style) export, and `onebyone adopt` making the exact cases TensorRT-ready — checked here against the foreign
file's outputs in a plain ONNX Runtime session on fresh inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from onebyone.runtime.commands.main import main
from onebyone.runtime.preflight.lint import lint_file
from tests.helpers import files_under

SHAPE = (1, 3, 16, 16)


class Images(CalibrationDataReader):
    def __init__(self, rng: np.random.Generator) -> None:
        self.batches = iter([{"x": rng.standard_normal(SHAPE).astype(np.float32)} for _ in range(8)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory) -> dict[str, Path]:
    """A float Conv-Relu-Conv-Add network and ONNX Runtime's QDQ files of it: the defaults (asymmetric activations,
    INT32 biases), symmetric UINT8 activations (zero point 128), and ORT's TensorRT recipe (symmetric INT8, no bias
    quantization)."""
    folder = tmp_path_factory.mktemp("foreign")
    rng = np.random.default_rng(7)
    weights = {"w1": rng.standard_normal((8, 3, 3, 3)) * 0.3, "b1": rng.standard_normal(8) * 0.1,
               "w2": rng.standard_normal((8, 8, 1, 1)) * 0.3, "b2": rng.standard_normal(8) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Add", ["c2", "r1"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                              [numpy_helper.from_array(a.astype(np.float32), n) for n, a in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    files = {"float": folder / "float.onnx"}
    onnx.save(model, files["float"])
    recipes = {"default": {},
               "symmetric_u8": {"activation_type": QuantType.QUInt8, "extra_options": {"ActivationSymmetric": True}},
               "tensorrt": {"activation_type": QuantType.QInt8, "weight_type": QuantType.QInt8, "per_channel": True,
                            "extra_options": {"ActivationSymmetric": True, "WeightSymmetric": True,
                                              "QuantizeBias": False}}}
    for name, options in recipes.items():
        files[name] = folder / f"ort_{name}.onnx"
        quantize_static(str(files["float"]), str(files[name]), Images(rng), quant_format=QuantFormat.QDQ, **options)
    return files


def refused_rules(path: Path, version: str = "11.1") -> set[str]:
    verdict = next(v for v in lint_file(path).verdicts if v.tensorrt == version)
    return {problem.rule for problem in verdict.problems}


def test_ort_quantize_static_defaults_are_refused_with_the_rules(foreign):
    """onnx/onnx-tensorrt#850, microsoft/onnxruntime#14229 (INT32 bias DQ); NVIDIA/TensorRT#2774 (zero points)."""
    for version in ("10.16", "11.1"):
        rules = refused_rules(foreign["default"], version)
        assert {"DequantizeLinear supports INT8, FP8, FP4, INT4", "`y_zero_point` must be 0",
                "`x_zero_point` must be zero"} <= rules, rules


def test_ort_tensorrt_recipe_is_accepted(foreign):
    assert lint_file(foreign["tensorrt"], ["10.0", "10.16", "11.1"]).accepted


def run(path: Path, inputs: np.ndarray, level: onnxruntime.GraphOptimizationLevel) -> np.ndarray:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = level
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": inputs})[0]


def test_adopt_makes_ort_symmetric_file_tensorrt_ready_and_computes_the_same(foreign, tmp_path):
    assert not lint_file(foreign["symmetric_u8"]).accepted
    output = tmp_path / "adopted.onnx"
    assert main(["adopt", str(foreign["symmetric_u8"]), "-o", str(output)]) == 0
    assert lint_file(output, ["10.0", "10.16", "11.1"]).accepted
    types = {init.data_type for init in onnx.load(output).graph.initializer}
    assert TensorProto.INT32 not in types and TensorProto.UINT8 not in types
    inputs = np.random.default_rng().standard_normal((1, *SHAPE[1:])).astype(np.float32) * 2
    # The files' own Q/DQ math (no fusions; basic level too). At ORT_ENABLE_ALL each file runs on ORT's int8 kernels,
    # which on a CPU without VNNI saturate full-range weights (docs/cpus.md): the kernel check's business, not adopt's.
    levels = onnxruntime.GraphOptimizationLevel
    for level in (levels.ORT_DISABLE_ALL, levels.ORT_ENABLE_BASIC):
        expected, adopted = run(foreign["symmetric_u8"], inputs, level), run(output, inputs, level)
        assert adopted.shape == expected.shape and np.isfinite(adopted).all()
        assert np.abs(adopted - expected).max() <= 1e-6 * np.abs(expected).max(), f"exact rewrites ({level})"


def test_adopt_names_the_rule_when_the_rewrite_cannot_be_exact(foreign, tmp_path, capsys):
    output = tmp_path / "out" / "adopted.onnx"
    assert main(["adopt", str(foreign["default"]), "-o", str(output)]) == 1
    err = capsys.readouterr().err
    assert "`y_zero_point` must be 0" in err and "onebyone quantize" in err and "Traceback" not in err
    assert files_under(tmp_path / "out") == []


class FakeQuantized(torch.nn.Module):
    """A QAT-style network: fake-quantized input and weight around a Conv (torch exports Q/DQ pairs)."""

    def __init__(self, low: int, high: int, zero_point: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.low, self.high, self.zero_point = low, high, zero_point

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.fake_quantize_per_tensor_affine(x, 0.05, self.zero_point, self.low, self.high)
        weight = torch.fake_quantize_per_channel_affine(
            self.conv.weight, torch.full((4,), 0.01), torch.zeros(4, dtype=torch.int32), 0, -128, 127)
        return torch.nn.functional.conv2d(x, weight, self.conv.bias, padding=1)


@pytest.mark.parametrize(("low", "high", "zero_point", "accepted"), [(0, 255, 3, False), (-128, 127, 0, True)],
                         ids=["asymmetric-quint8", "symmetric-qint8"])
def test_torch_fake_quantized_exports(low, high, zero_point, accepted, tmp_path):
    """torch.ao's default QAT activations (quint8, zero point ≠ 0) are refused; symmetric INT8 is accepted."""
    path = tmp_path / "qat.onnx"
    torch.onnx.export(FakeQuantized(low, high, zero_point).eval(), (torch.randn(*SHAPE),), str(path), opset_version=17,
                      dynamo=False)
    lint = lint_file(path)
    assert lint.accepted is accepted, lint.record()
    if not accepted:
        assert "`y_zero_point` must be 0" in refused_rules(path)
