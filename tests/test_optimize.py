"""`onebyone optimize`: the whole zoo loses its BatchNorms and still matches torch; bad input is refused cleanly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import helper
from torch import nn

from onebyone.export.models.digits_segmenter import DigitsSegmenter
from onebyone.export.models.inception import Inception
from onebyone.export.models.resnet import Bottleneck
from onebyone.export.zoo import ZOO, instantiate
from onebyone.optimize.targets import PASSES, TARGETS, pass_class
from onebyone.runtime.bundle.manifest import read_manifest
from tests.exports import assert_matches_torch, count, op_counts
from tests.helpers import ZOO_PARAMS, files_under


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_zoo_with_batchnorm_optimizes_to_no_batchnorm_and_matches_torch(name, exported, tmp_path, cli, rng):
    bundle = shutil.copytree(exported(name, keep_batchnorm=True).bundle, tmp_path / "bundle")
    code, out, err = cli("optimize", bundle / "model.onnx", "--verify", "--report", tmp_path / "report.json")
    assert code == 0, err + out
    optimized = bundle / "model.opt.onnx"
    model = instantiate(ZOO[name])
    counts = op_counts(optimized)
    merges = sibling_merges(model)
    assert "BatchNormalization" not in counts and counts.get("Split", 0) == len(merges)
    assert counts["Conv"] == count(model, nn.Conv2d) - sum(merged - 1 for merged in merges)
    assert_matches_torch(optimized, model, ZOO[name].input_shape, rng)
    report = json.loads((tmp_path / "report.json").read_text())
    folded = next(p for p in report["passes"] if p["name"] == "fold_batchnorm")
    assert folded["ops_before"].get("BatchNormalization", 0) == count(model, nn.BatchNorm2d)
    assert not folded["refusals"] and (folded["verification"]["ok"] if folded["changed"] else True)
    record = read_manifest(bundle).artifacts["model.opt.onnx"]
    assert record.parity["ok"] and record.made_by["stage"] == "optimize"
    assert cli("verify", bundle)[0] == 0


def sibling_merges(model: nn.Module) -> list[int]:
    """How many Convs each sibling merge of the default target joins, derived from the module structure:
    a bottleneck's conv1 and downsample conv when their strides agree; an Inception block's three 1x1 branches;
    digits_segmenter's stride-1 1x1 classifier beside layer2's first 1x1 conv (both read layer1)."""
    merges = [2] if isinstance(model, DigitsSegmenter) else []
    for module in model.modules():
        if isinstance(module, Bottleneck) and module.downsample is not None:
            merges += [2] if module.conv1.stride == module.downsample[0].stride else []
        elif isinstance(module, Inception):
            merges.append(3)
    return merges


def test_sibling_merges_where_the_architecture_has_them():
    assert sibling_merges(instantiate(ZOO["resnet50_v1"])) == [2, 2, 2, 2]  # every stage entry
    assert sibling_merges(instantiate(ZOO["resnet50"])) == [2]  # layer1.0 only: later stages stride in the 3x3
    assert sibling_merges(instantiate(ZOO["inception_block"])) == [3]


@pytest.mark.parametrize("target", ["generic", "ort", "trt"])
def test_tensor_names_survive_optimization(target, exported, tmp_path, cli):
    bundle = shutil.copytree(exported("digits_resnet", keep_batchnorm=True).bundle, tmp_path / "bundle")
    assert cli("optimize", bundle / "model.onnx", "--target", target)[0] == 0
    before = onnx.load(str(bundle / "model.onnx")).graph
    after = onnx.load(str(bundle / "model.opt.onnx")).graph
    produced = {out: n.op_type for n in after.node for out in n.output}
    bn_outputs = {n.output[0] for n in before.node if n.op_type == "BatchNormalization"}
    relu_outputs = {n.output[0] for n in before.node if n.op_type == "Relu"}
    assert relu_outputs <= set(produced), "every activation keeps its name"
    if target != "ort":  # on ORT, a BN output read by a Relu is fused away with it
        assert {produced[name] for name in bn_outputs} <= {"Conv", "Split"}, "folded Convs carry the BN's names"
    assert [i.name for i in after.input] == ["input"] and [o.name for o in after.output] == ["logits"]


def test_optimize_outside_a_bundle(tmp_path, exported, cli):
    source = tmp_path / "plain.onnx"
    shutil.copy(exported("inception_block", keep_batchnorm=True).onnx_path, source)
    code, out, _ = cli("optimize", source, "-o", tmp_path / "out.onnx", "--passes", "fold_batchnorm,cleanup")
    assert code == 0 and "not in a bundle" in out
    assert "BatchNormalization" not in op_counts(tmp_path / "out.onnx")


def bad_file(kind, tmp_path, exported):
    path = tmp_path / "bad.onnx"
    good = exported("digits_resnet").onnx_path.read_bytes()
    if kind == "text":
        path.write_text("definitely not protobuf")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "invalid":
        node = helper.make_node("Relu", ["undefined_tensor"], ["y"])
        graph = helper.make_graph([node], "g", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
        path.write_bytes(helper.make_model(graph).SerializeToString())
    elif kind == "shape-inconsistent":  # a declared output shape that strict shape inference contradicts
        node = helper.make_node("Relu", ["x"], ["y"], name="the_relu")
        graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                                  [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16])])
        path.write_bytes(helper.make_model(graph).SerializeToString())
    return path


@pytest.mark.parametrize(("kind", "message"), [("text", "not a readable ONNX file"),
                                               ("truncated", "not a readable ONNX file"),
                                               ("invalid", "not a valid ONNX model"),
                                               ("shape-inconsistent", "node name: the_relu")])
def test_bad_models_are_refused(kind, message, tmp_path, exported, cli):
    path = bad_file(kind, tmp_path, exported)
    code, out, err = cli("optimize", path, "-o", tmp_path / "out" / "o.onnx")
    assert code == 2 and message in err and "Traceback" not in out + err
    assert files_under(tmp_path / "out") == []


def test_unknown_pass_and_missing_file(tmp_path, exported, cli):
    code, _, err = cli("optimize", exported("digits_resnet").onnx_path, "--passes", "fold_batchnorm,fuse_all",
                       "-o", tmp_path / "o.onnx")
    assert code == 2 and "unknown pass(es) fuse_all" in err and "fold_batchnorm" in err
    code, _, err = cli("optimize", tmp_path / "missing.onnx")
    assert code == 2 and "does not exist" in err
    assert files_under(tmp_path) == []


def test_the_one_list_of_passes_names_each_by_its_class():
    """optimize/targets.py lists every pass by name and class; each class calls itself by that name, and every
    target runs listed passes only."""
    assert all(pass_class(name).name == name for name in PASSES)
    assert {name for passes in TARGETS.values() for name in passes} <= set(PASSES)


@pytest.mark.parametrize("first", TARGETS)
def test_every_target_round_trips_through_every_stage(first, exported, tmp_path, cli):
    """An optimized file is valid ONNX (onnx.checker's full check) and a valid input to optimize (any target but
    `trt` after `ort`: TensorRT cannot parse ONNX Runtime's contrib ops) and to quantize: FP16 of any target's
    output, INT8 of the targets without ONNX Runtime contrib ops."""
    bundle = shutil.copytree(exported("digits_resnet", keep_batchnorm=True).bundle, tmp_path / "bundle")
    first_file = bundle / f"model.{first}.onnx"
    assert cli("optimize", bundle / "model.onnx", "--target", first, "-o", first_file, "--verify")[0] == 0
    onnx.checker.check_model(str(first_file), full_check=True)
    for second in TARGETS:
        again = bundle / f"model.{first}.{second}.onnx"
        code, out, err = cli("optimize", first_file, "--target", second, "-o", again, "--verify")
        if (first, second) == ("ort", "trt"):
            assert code == 2 and "ONNX Runtime contrib ops" in err and not again.exists(), err + out
            continue
        assert code == 0, err + out
        onnx.checker.check_model(str(again), full_check=True)
    code, out, err = cli("quantize", first_file, "--precision", "fp16")
    assert code == 0, err + out
    onnx.checker.check_model(str(bundle / f"model.{first}.fp16.onnx"), full_check=True)
    if first != "ort":
        code, out, err = cli("quantize", first_file, "--precision", "int8", "--calib", "digits", "--flavour", "ort")
        assert code == 0, err + out
        onnx.checker.check_model(str(bundle / f"model.{first}.int8-ort.onnx"), full_check=True)


@pytest.mark.parametrize("level", ["basic", "extended"])
def test_files_onnx_runtime_optimized_offline_are_valid_inputs(level, exported, tmp_path, cli, rng):
    """ONNX Runtime's offline-optimized file (its BN-folded graph at `basic`; with com.microsoft FusedConv at
    `extended`) goes through optimize (verified, every target but `trt` for the contrib ops, refused) into a valid file
    that still matches torch; the `basic` one also quantizes."""
    from onebyone.runtime.core.ort_session import ort_session

    source = exported("digits_resnet", keep_batchnorm=True).onnx_path
    offline = tmp_path / f"ort-{level}.onnx"
    ort_session(source, level, optimized_model_path=offline)
    for target in TARGETS:
        output = tmp_path / f"ort-{level}.{target}.onnx"
        code, out, err = cli("optimize", offline, "--target", target, "-o", output, "--verify")
        if (level, target) == ("extended", "trt"):
            assert code == 2 and "contrib ops" in err and not output.exists(), err + out
            continue
        assert code == 0, err + out
        onnx.checker.check_model(str(output), full_check=True)
        assert_matches_torch(output, instantiate(ZOO["digits_resnet"]), ZOO["digits_resnet"].input_shape, rng)
    if level == "basic":
        np.save(tmp_path / "calib.npy", rng.standard_normal((16, 1, 8, 8)).astype(np.float32))
        code, out, err = cli("quantize", tmp_path / "ort-basic.trt.onnx", "--precision", "int8", "--calib",
                             tmp_path / "calib.npy", "-o", tmp_path / "ort-basic.int8.onnx")
        assert code == 0, err + out
        onnx.checker.check_model(str(tmp_path / "ort-basic.int8.onnx"), full_check=True)


def test_refusals_are_summarised_per_kind_and_listed_with_verbose(exported, cli, tmp_path):
    """Lite0's 23 refused rewrites print as one line per kind with a count; `--verbose` lists each."""
    source = exported("efficientnet_lite0", keep_batchnorm=True).onnx_path
    code, out, err = cli("optimize", source, "-o", tmp_path / "a.onnx")
    assert code == 0, err + out
    lines = [line for line in out.splitlines() if line.strip().startswith("refused")]
    assert "refused 16×: grouped Conv: concatenating output channels would break its groups" in out
    assert len(lines) == len(set(lines)) <= 4, out
    code, out, err = cli("optimize", source, "-o", tmp_path / "b.onnx", "--verbose")
    assert code == 0 and sum(line.strip().startswith("refused at") for line in out.splitlines()) >= 23, out
