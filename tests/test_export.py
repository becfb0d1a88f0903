"""Exports match torch, carry their metadata, and have the op counts their architecture implies."""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from onebyone.export.models.densenet import DenseNet, _DenseLayer, _Transition
from onebyone.export.models.digits_segmenter import DigitsSegmenter
from onebyone.export.models.efficientnet_lite import EfficientNetLite, MBConvBlock
from onebyone.export.models.inception import Inception
from onebyone.export.models.mobilenet import InvertedResidual, MobileNetV2
from onebyone.export.models.resnet import Bottleneck, ResNet
from onebyone.export.models.squeezenet import Fire, SqueezeNet
from onebyone.export.zoo import ZOO, instantiate
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, read_manifest
from onebyone.runtime.core.files import sha256_file
from tests.exports import assert_matches_torch, count, op_counts
from tests.helpers import FP32_REL_TOL, ZOO_PARAMS, files_under


def expected_ops(model: nn.Module, keep_batchnorm: bool = False, input_shape: tuple[int, ...] = (0,)) -> Counter:
    """Op counts of a clean export, derived from the module structure (not from a previous export)."""
    convs = count(model, nn.Conv2d)
    if isinstance(model, DigitsSegmenter):
        # the body's blocks and stem, the two classifiers summed after the coarse one's Resize to the input's H×W,
        # whose size is read at run time: Shape → Gather/Slice → Unsqueeze/Cast → Concat (the exporter's own pattern)
        blocks = count(model, Bottleneck)
        ops = Counter(Conv=convs, Relu=1 + 3 * blocks, Add=blocks + 1, Resize=1, Shape=3, Gather=2, Unsqueeze=2,
                      Concat=2, Slice=1, Cast=1)
    elif isinstance(model, ResNet):
        blocks = count(model, Bottleneck)  # each block: 3 Relu (relu module applied thrice), 1 residual Add
        ops = Counter(Conv=convs, Relu=1 + 3 * blocks, Add=blocks, GlobalAveragePool=1, Flatten=1, Gemm=1,
                      MaxPool=count(model, nn.MaxPool2d))
    elif isinstance(model, MobileNetV2):
        residual = sum(m.use_res_connect for m in model.modules() if isinstance(m, InvertedResidual))
        ops = Counter(Conv=convs, Clip=count(model, nn.ReLU6), Add=residual, GlobalAveragePool=1, Flatten=1, Gemm=1)
    elif isinstance(model, Inception):
        ops = Counter(Conv=convs, Relu=convs, MaxPool=1, Concat=1)
    elif isinstance(model, SqueezeNet):  # every conv has its Relu; each Fire module ends in a Concat
        ops = Counter(Conv=convs, Relu=convs, Concat=count(model, Fire), MaxPool=3, GlobalAveragePool=1, Flatten=1)
    elif isinstance(model, DenseNet):
        # BN → ReLU → Conv (pre-activation) cannot fold into a Conv: only norm0 and each layer's norm2 (after a conv)
        # fold at export. Each layer concatenates its inputs (for a block's first layer a single tensor, which export's
        # constant folding drops), each block its layers' outputs; Relu: two per layer, one per transition, relu0 and
        # the final one.
        layers, transitions = count(model, _DenseLayer), count(model, _Transition)
        ops = Counter(Conv=convs, BatchNormalization=count(model, nn.BatchNorm2d) - 1 - layers,
                      Relu=2 * layers + transitions + 2, Concat=layers,
                      AveragePool=transitions, MaxPool=1, GlobalAveragePool=1, Flatten=1, Gemm=1)
    elif isinstance(model, EfficientNetLite):
        # ReLU6 (Clip) after the stem, the head and each block's expansion and depthwise conv; a residual Add per
        # block whose stride is 1 and channels match; a Pad before each stride-2 conv (TensorFlow's SAME padding is
        # asymmetric on even sizes), the other convs pad themselves
        # (on an odd size the split is even, so a stride-2 conv pads itself there)
        blocks = [m for m in model.modules() if isinstance(m, MBConvBlock)]
        size, pads = input_shape[-1], 0
        for _ in (m for m in model.modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)):
            pads += size % 2 == 0
            size = -(-size // 2)
        ops = Counter(Conv=convs, Clip=2 + sum(1 + hasattr(b, "_expand_conv") for b in blocks),
                      Add=sum(b.residual for b in blocks), Pad=pads, GlobalAveragePool=1, Flatten=1, Gemm=1)
    else:
        raise AssertionError(f"no op-count rule for {type(model).__name__}")
    if keep_batchnorm:
        ops["BatchNormalization"] = count(model, nn.BatchNorm2d)
    return +ops


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_dynamic_batch_export_matches_torch(name, exported, rng):
    result = exported(name)
    spec = ZOO[name]
    graph_input = onnx.load(str(result.onnx_path)).graph.input[0]
    assert graph_input.type.tensor_type.shape.dim[0].dim_param == "batch"
    assert_matches_torch(result.onnx_path, instantiate(spec), spec.input_shape, rng)


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_default_export_op_counts(name, exported):
    expected = expected_ops(instantiate(ZOO[name]), input_shape=ZOO[name].input_shape)
    assert op_counts(exported(name).onnx_path) == expected


@pytest.mark.parametrize("name", ["digits_resnet", "resnet50", "mobilenet_v2", "inception_block",
                                  pytest.param("resnext50_32x4d", marks=pytest.mark.slow)])
def test_keep_batchnorm_export_has_batchnorm_and_matches_torch(name, exported, rng):
    result = exported(name, keep_batchnorm=True)
    model = instantiate(ZOO[name])
    assert op_counts(result.onnx_path) == expected_ops(model, keep_batchnorm=True)
    assert_matches_torch(result.onnx_path, model, ZOO[name].input_shape, rng)


@pytest.mark.parametrize("keep_batchnorm", [False, True])
def test_dynamo_exporter_matches_torch(keep_batchnorm, exported, rng):
    result = exported("digits_resnet", exporter="dynamo", keep_batchnorm=keep_batchnorm)
    model = instantiate(ZOO["digits_resnet"])
    assert op_counts(result.onnx_path)["BatchNormalization"] == (count(model, nn.BatchNorm2d) if keep_batchnorm else 0)
    assert_matches_torch(result.onnx_path, model, ZOO["digits_resnet"].input_shape, rng)


def test_fixed_batch_export(exported, rng):
    result = exported("digits_resnet", batch=7)
    dims = [d.dim_value for d in onnx.load(str(result.onnx_path)).graph.input[0].type.tensor_type.shape.dim]
    assert dims == [7, 1, 8, 8]
    assert Golden.load(result.bundle / GOLDEN_NAME).inputs["input"].shape == (7, 1, 8, 8)
    assert_matches_torch(result.onnx_path, instantiate(ZOO["digits_resnet"]), (1, 8, 8), rng, batches=(7,))
    # 360 labelled images = 51 batches of 7 + 3 zero-padded: the same accuracy as the dynamic-batch export
    assert result.check.accuracy == exported("digits_resnet").check.accuracy


def test_model_is_annotated_shape_inferred_and_checker_clean(exported):
    path = exported("resnet50").onnx_path
    onnx.checker.check_model(str(path), full_check=True)
    proto = onnx.load(str(path))
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    assert metadata["onebyone.model"] == "resnet50"
    assert json.loads(metadata["onebyone.input_shape"]) == [3, 224, 224]
    assert json.loads(metadata["onebyone.preprocess"])["mean"] == [0.485, 0.456, 0.406]
    assert metadata["onebyone.version"]
    assert [i.name for i in proto.graph.input] == ["input"] and [o.name for o in proto.graph.output] == ["logits"]
    typed = {info.name for info in proto.graph.value_info}
    untyped = [out for node in proto.graph.node for out in node.output if out not in typed and out != "logits"]
    assert not untyped, f"tensors without inferred shapes: {untyped[:5]}"


def test_manifest_describes_the_bundle(exported):
    result = exported("digits_resnet")
    manifest = read_manifest(result.bundle)
    record = manifest.artifacts["model.onnx"]
    assert record.sha256 == sha256_file(result.onnx_path)
    assert record.bytes == result.onnx_path.stat().st_size
    assert record.precision == "fp32" and record.tolerance.max_rel == FP32_REL_TOL
    assert record.parity["ok"] and record.parity["relative"] <= FP32_REL_TOL
    assert manifest.artifacts[GOLDEN_NAME].sha256 == sha256_file(result.bundle / GOLDEN_NAME)
    assert manifest.model.input_shape == [1, 8, 8] and manifest.model.batch is None
    assert manifest.model.preprocess["mode"] == "L"


def test_golden_outputs_are_the_torch_outputs_of_the_golden_inputs(exported):
    result = exported("inception_block")
    golden = Golden.load(result.bundle / GOLDEN_NAME)
    with torch.no_grad():
        expected = instantiate(ZOO["inception_block"])(torch.from_numpy(golden.inputs["input"])).numpy()
    np.testing.assert_array_equal(golden.outputs["features"], expected)


def test_class_labels_travel_in_the_manifest_and_the_onnx_metadata(exported, cli, tmp_path):
    """The zoo's digits carry their class names; `--labels FILE` (one per line, Triton's label file) sets others."""
    zoo = exported("digits_resnet")
    assert read_manifest(zoo.bundle).model.labels == [str(digit) for digit in range(10)]
    names = [f"digit {digit}" for digit in range(10)]
    (tmp_path / "labels.txt").write_text("\n".join(names) + "\n")
    code, _, err = cli("export", "digits_resnet", "-o", tmp_path / "named", "--labels", tmp_path / "labels.txt")
    assert code == 0, err
    assert read_manifest(tmp_path / "named").model.labels == names
    metadata = {p.key: p.value for p in onnx.load(str(tmp_path / "named" / "model.onnx")).metadata_props}
    assert json.loads(metadata["onebyone.labels"]) == names
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8), np.float32))
    code, out, err = cli("infer", tmp_path / "named" / "model.onnx", "--input", tmp_path / "x.npy", "--top-k", "2")
    assert code == 0, err
    assert re.search(r"1\. class (\d) \(digit \1\) ", out), out  # infer names the classes too


@pytest.mark.parametrize(("model", "lines", "message"), [
    ("digits_resnet", 9, "9 labels for 10 classes"),
    ("inception_block", 10, "class labels apply to classification"),
    ("digits_resnet", 0, "no labels"),
])
def test_a_labels_file_that_does_not_fit_is_a_user_error(cli, tmp_path, model, lines, message):
    (tmp_path / "labels.txt").write_text("".join(f"class {i}\n" for i in range(lines)))
    code, _, err = cli("export", model, "-o", tmp_path / "out", "--labels", tmp_path / "labels.txt")
    assert code == 2 and message in err and "Traceback" not in err
    assert files_under(tmp_path / "out") == []  # nothing written
