"""The TensorRT module's logic that needs no GPU: optimization-profile shapes from the batch options, plan.json and
the refusal of corrupted or foreign plans, dtype mapping and buffer sizing; and `onebyone build` without a GPU."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil

import numpy as np
import pytest

import onebyone.runtime.sessions.opening as sessions
from onebyone.runtime.bundle.manifest import ArtifactRecord, read_manifest, write_manifest
from onebyone.runtime.bundle.onnx_file import graph_precision, load_model
from onebyone.runtime.bundle.plan import (
    TRT_TO_NUMPY,
    BuildOptions,
    PlanInfo,
    buffer_bytes,
    check_compatible,
    compatibility_problems,
    numpy_dtype,
    parse_shapes,
    plan_info_path,
    profile_for,
    profile_shapes,
    profile_text,
    profiles_record,
    read_plan_info,
    where_it_runs,
)
from onebyone.runtime.bundle.tensors import TensorSpec
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import sha256_file
from onebyone.runtime.sessions.locate import PLAN_KIND
from tests.helpers import files_under

DYNAMIC_INPUT = TensorSpec("input", np.dtype(np.float32), (-1, 3, 224, 224))
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_profiles_put_the_batch_options_on_the_dynamic_axis():
    profiles = profile_shapes([DYNAMIC_INPUT], BuildOptions(min_batch=2, opt_batch=4, max_batch=16))
    assert profiles == [{"input": ((2, 3, 224, 224), (4, 3, 224, 224), (16, 3, 224, 224))}]


@pytest.mark.parametrize(("options", "opt"), [(BuildOptions(), 8), (BuildOptions(max_batch=4), 4),
                                              (BuildOptions(min_batch=12, max_batch=64), 12)])
def test_default_opt_batch_is_eight_clamped_to_the_range(options, opt):
    assert profile_shapes([DYNAMIC_INPUT], options)[0]["input"][1][0] == opt


def test_a_fixed_batch_model_gets_its_batch_and_refuses_other_options():
    fixed = TensorSpec("input", np.dtype(np.float32), (4, 1, 8, 8))
    assert profile_shapes([fixed], BuildOptions())[0]["input"] == ((4, 1, 8, 8),) * 3
    with pytest.raises(UserError, match="has a fixed batch of 4; drop the batch options or re-export"):
        profile_shapes([fixed], BuildOptions(max_batch=8))


@pytest.mark.parametrize(("spec", "options", "message"), [
    (DYNAMIC_INPUT, BuildOptions(min_batch=8, max_batch=4), "1 <= min_batch=8 <= opt_batch=8 <= "),
    (DYNAMIC_INPUT, BuildOptions(opt_batch=64), "opt_batch=64 <= max_batch=32"),
    (DYNAMIC_INPUT, BuildOptions(opt_level=6), "opt_level=6 is outside TensorRT's 0..5"),
    (TensorSpec("input", np.dtype(np.float32), (-1, 3, -1, -1)), BuildOptions(),
     "dynamic axis besides the batch; give the range to build for with shapes=input:1x3xHxH..8x3xHxH..32x3xHxH"),
    (DYNAMIC_INPUT, BuildOptions(shapes=({"other": ((1, 3, 224, 224),) * 3},)), r"names inputs \['other'\]"),
    (DYNAMIC_INPUT, BuildOptions(shapes=({"input": ((1, 3, 224),) * 3},)), "has rank 4"),
    (DYNAMIC_INPUT, BuildOptions(shapes=({"input": ((1, 3, 224, 224), (1, 3, 224, 224), (2, 1, 224, 224))},)),
     "axis 1 of input 'input' float32 \\[-1, 3, 224, 224\\] is fixed at 3"),
    (DYNAMIC_INPUT, BuildOptions(shapes=({"input": ((4, 3, 224, 224), (2, 3, 224, 224), (8, 3, 224, 224))},)),
     "1 <= MIN <= OPT <= MAX"),
    (DYNAMIC_INPUT, BuildOptions(max_batch=8, shapes=({"input": ((1, 3, 224, 224),) * 3},)),
     "gives the batch range itself"),
])
def test_bad_build_options_are_named(spec, options, message):
    with pytest.raises(UserError, match=message):
        profile_shapes([spec], options)


SPATIAL_INPUT = TensorSpec("input", np.dtype(np.float32), (-1, 3, -1, -1))


def test_shapes_parse_like_trtexec_and_make_several_profiles():
    small = parse_shapes("input:1x3x128x128..4x3x256x256..8x3x256x256")
    large = parse_shapes("input:1x3x256x256..2x3x512x512..4x3x1024x1024")
    profiles = profile_shapes([SPATIAL_INPUT], BuildOptions(shapes=(small, large)))
    assert profiles == [{"input": ((1, 3, 128, 128), (4, 3, 256, 256), (8, 3, 256, 256))},
                        {"input": ((1, 3, 256, 256), (2, 3, 512, 512), (4, 3, 1024, 1024))}]
    assert profile_text(profiles[1]) == "input 1x3x256x256..2x3x512x512..4x3x1024x1024"
    assert profiles_record(profiles)[1]["input"]["max"] == [4, 3, 1024, 1024]
    # the runtime picks the first profile that contains a request's shape, and none for one outside them all
    assert profile_for(profiles, {"input": (8, 3, 200, 256)}) == 0
    assert profile_for(profiles, {"input": (2, 3, 256, 256)}) == 0
    assert profile_for(profiles, {"input": (2, 3, 700, 512)}) == 1
    assert profile_for(profiles, {"input": (8, 3, 700, 512)}) is None
    assert profile_for(profiles, {"input": (1, 3, 64, 64)}) is None


@pytest.mark.parametrize("text", ["input:1x3x8x8..2x3x8x8", "input:1x3x8x8..a..3x3x8x8", ":1x1..1x1..1x1", ","])
def test_malformed_shapes_are_named(text):
    with pytest.raises(UserError, match="shapes="):
        parse_shapes(text)


def test_a_version_1_plan_record_reads_as_one_profile(tmp_path):
    plan = write_plan(tmp_path)
    raw = json.loads(plan_info_path(plan).read_text())
    raw |= {"format": "onebyone.plan/1", "profiles": raw["profiles"][0]}
    plan_info_path(plan).write_text(json.dumps(raw))
    assert read_plan_info(plan).profiles == [raw["profiles"]]


def test_dtype_mapping_and_buffer_sizes():
    assert {name: numpy_dtype(name, "t") for name in TRT_TO_NUMPY} == {
        "FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
        "INT64": np.int64, "BOOL": np.bool_}
    with pytest.raises(UserError, match="engine tensor 'logits' has TensorRT type BF16, which has no numpy"):
        numpy_dtype("BF16", "logits")
    for dtype in (np.float32, np.float16, np.int8, np.int64):
        shape = (32, 3, 224, 224)
        assert buffer_bytes(shape, np.dtype(dtype)) == np.zeros(shape, dtype).nbytes
    with pytest.raises(ValueError, match="not concrete"):
        buffer_bytes((-1, 3), np.dtype(np.float32))


def write_plan(folder, content=b"serialized engine bytes", **fields) -> object:
    plan = folder / "model.plan"
    plan.write_bytes(content)
    info = PlanInfo(tensorrt="10.13.0.35", gpu="NVIDIA H200", compute_capability="9.0",
                    onnx={"name": "build/m/model.onnx", "sha256": "0" * 64}, plan_sha256=sha256_file(plan),
                    precision="fp16", profiles=[{"input": {"min": [1, 3, 8, 8], "opt": [8, 3, 8, 8],
                                                           "max": [32, 3, 8, 8]}}],
                    build_seconds=12.5, options={"opt_level": 3}, metadata={},
                    io={"inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 3, 8, 8]}],
                        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}]})
    plan_info_path(plan).write_text(dataclasses.replace(info, **fields).to_json())
    return plan


def test_plan_info_round_trips_and_matching_environment_passes(tmp_path):
    plan = write_plan(tmp_path)
    info = read_plan_info(plan)
    assert info.tensorrt == "10.13.0.35" and info.profiles[0]["input"]["max"] == [32, 3, 8, 8]
    check_compatible(info, plan, "10.13.0.35", "9.0", "NVIDIA H200")


@pytest.mark.parametrize(("version", "capability", "messages"), [
    ("11.0.0.1", "9.0", ["was built for TensorRT 10.13.0.35, this machine has 11.0.0.1"]),
    ("10.13.0.35", "8.9", ["compute capability 9.0 (NVIDIA H200, hardware compatibility none), this GPU is 8.9 "
                           "(NVIDIA L4)"]),
    ("10.8.0.43", "8.0", ["TensorRT 10.13.0.35, this machine has 10.8.0.43; and for compute capability 9.0"]),
])
def test_a_plan_from_another_tensorrt_or_gpu_is_refused(tmp_path, version, capability, messages):
    plan = write_plan(tmp_path)
    gpu = {"8.9": "NVIDIA L4", "8.0": "NVIDIA A100"}.get(capability, "NVIDIA H200")
    with pytest.raises(UserError) as error:
        check_compatible(read_plan_info(plan), plan, version, capability, gpu)
    text = str(error.value)
    assert all(message in text for message in messages)
    assert f"rebuild it here with `onebyone build build/m/model.onnx -o {plan}`" in text


def test_a_corrupted_plan_is_refused_before_tensorrt_sees_it(tmp_path):
    plan = write_plan(tmp_path)
    plan.write_bytes(b"serialized engine bytes, truncated"[:12])
    for opener in (read_plan_info, lambda p: sessions.open(p)):
        with pytest.raises(UserError, match="is corrupted or was replaced: its sha256 differs from the one recorded"):
            opener(plan)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda info_path: info_path.unlink(), "has no model.plan.json beside it"),
    (lambda info_path: info_path.write_text("{not json"), "is not a valid plan record"),
    (lambda info_path: info_path.write_text(json.dumps({"format": "onebyone.plan/0"})),
     "format is 'onebyone.plan/0'"),
])
def test_a_missing_or_broken_plan_record_is_refused(tmp_path, edit, message):
    plan = write_plan(tmp_path)
    edit(plan_info_path(plan))
    with pytest.raises(UserError, match=message):
        read_plan_info(plan)


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the no-GPU message does not apply")
def test_an_intact_plan_without_tensorrt_names_what_is_needed(tmp_path):
    with pytest.raises(UserError, match=r"TensorRT engines need an NVIDIA GPU .* pip install 'onebyone\[tensorrt\]' "
                                        r"\(the tensorrt package is not installed\)"):
        sessions.open(write_plan(tmp_path))


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: the no-GPU message does not apply")
def test_build_without_gpu_exits_2_with_what_is_needed_and_writes_nothing(exported, cli, tmp_path):
    bundle = tmp_path / "digits_resnet"
    shutil.copytree(exported("digits_resnet").bundle, bundle)
    before = files_under(tmp_path)
    code, _, err = cli("build", bundle / "model.onnx", "--max-batch", "16")
    assert code == 2 and "Traceback" not in err
    assert "TensorRT engines need an NVIDIA GPU with its driver, TensorRT and cuda-python (or pycuda): pip install " \
           "'onebyone[tensorrt]'" in " ".join(err.split())
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(("args", "message"), [
    (["--min-batch", "8", "--max-batch", "4"], "1 <= --min-batch 8 <= --opt-batch 8 <= --max-batch 4"),
    (["-o", "/proc/no/such/dir/model.plan"], "cannot write to /proc/no/such/dir"),
])
def test_build_checks_its_arguments_before_needing_a_gpu(exported, cli, args, message):
    code, _, err = cli("build", exported("digits_resnet").onnx_path, *args)
    assert code == 2 and message in " ".join(err.split())


def test_build_refuses_a_file_that_is_not_onnx(cli, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"\x08garbage")
    code, _, err = cli("build", tmp_path / "model.onnx")
    assert code == 2 and "is not a readable ONNX file" in err


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed: plans are checked, not skipped")
def test_verify_reports_recorded_plans_as_skipped_without_a_gpu(exported, cli, tmp_path):
    bundle = tmp_path / "digits_resnet"
    shutil.copytree(exported("digits_resnet").bundle, bundle)
    plan = write_plan(bundle)
    manifest = read_manifest(bundle)
    manifest.artifacts[plan.name] = ArtifactRecord.for_file(plan, kind=PLAN_KIND, made_by={"stage": "build"},
                                                            precision="fp32", tolerance=TOLERANCES["fp32"])
    write_manifest(bundle, manifest)
    code, out, _ = cli("verify", bundle)
    assert code == 0
    assert re.search(r"model\.plan\s+fp32\s+SKIP  checking a TensorRT plan needs an NVIDIA GPU", out)
    assert re.search(r"model\.onnx\s+fp32\s+PASS", out)


def test_plan_precision_is_read_from_the_graph(exported, cli, tmp_path):
    source = exported("digits_resnet").onnx_path
    assert cli("quantize", source, "--precision", "fp16", "-o", tmp_path / "fp16.onnx")[0] == 0
    assert cli("quantize", source, "--precision", "int8", "--calib", "digits", "--method", "minmax",
               "-o", tmp_path / "int8.onnx")[0] == 0
    found = {path.stem: graph_precision(load_model(path))
             for path in (source, tmp_path / "fp16.onnx", tmp_path / "int8.onnx")}
    assert found == {source.stem: "fp32", "fp16": "fp16", "int8": "int8"}


ENGINE_INFORMATION = {  # IEngineInspector's JSON for a detailed-profiling engine (the shape TensorRT documents)
    "Layers": [
        {"Name": "input_quantize", "LayerType": "Scale", "Inputs": [{"Name": "input", "Format/Datatype": "Row major "
         "linear FP32"}], "Outputs": [{"Name": "q", "Format/Datatype": "Channel major INT8 format where channel % 32 "
                                        "== 0"}], "TacticValue": "0x0000000000000000"},
        {"Name": "conv1 + relu1", "LayerType": "CaskConvolution",
         "Inputs": [{"Name": "q", "Format/Datatype": "Channel major INT8 format where channel % 32 == 0"}],
         "Outputs": [{"Name": "h", "Format/Datatype": "Channel major INT8 format where channel % 32 == 0"}],
         "TacticName": "sm90_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32"},
        {"Name": "fc", "LayerType": "CaskGemm", "Inputs": [{"Name": "h", "Format/Datatype": "Row major linear Half"}],
         "Outputs": [{"Name": "logits", "Format/Datatype": "Row major linear FP32"}], "TacticName": "gemm_f16"},
    ],
    "Bindings": ["input", "logits"],
}


def test_engine_layers_are_read_with_their_precisions():
    from onebyone.runtime.sessions.tensorrt_backend import describe_layers

    assert describe_layers(ENGINE_INFORMATION) == [
        {"name": "input_quantize", "type": "Scale", "inputs": ["fp32"], "outputs": ["int8"],
         "tactic": "0x0000000000000000"},
        {"name": "conv1 + relu1", "type": "CaskConvolution", "inputs": ["int8"], "outputs": ["int8"],
         "tactic": "sm90_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32"},
        {"name": "fc", "type": "CaskGemm", "inputs": ["fp16"], "outputs": ["fp32"], "tactic": "gemm_f16"}]
    assert describe_layers({"Layers": ["conv1 + relu1"]})[0]["name"] == "conv1 + relu1"  # names-only profiling


@pytest.mark.parametrize(("name", "message"), [("model.onnx", "is not a TensorRT plan"),
                                                ("model.plan", "TensorRT engines need an NVIDIA GPU")])
def test_inspect_errors_exit_2(cli, tmp_path, name, message):
    if name.endswith(".plan") and HAS_TENSORRT:
        pytest.skip("TensorRT is installed: the no-GPU message does not apply")
    from tests.formats import write_plan

    target = write_plan(tmp_path) if name.endswith(".plan") else tmp_path / name
    code, _, err = cli("inspect", target)
    assert code == 2 and message in " ".join(err.split()) and "Traceback" not in err


@pytest.mark.parametrize(("options", "version", "capability", "runs"), [
    ({"version_compatible": True}, "10.16.1.11", "9.0", True),
    ({"version_compatible": True}, "10.8.0.43", "9.0", False),
    ({"version_compatible": True}, "11.1.0.1", "9.0", False),
    ({}, "10.16.1.11", "9.0", False),
    ({"hardware_compatibility": "ampere+"}, "10.13.0.35", "8.0", True),
    ({"hardware_compatibility": "ampere+"}, "10.13.0.35", "12.0", True),
    ({"hardware_compatibility": "ampere+"}, "10.13.0.35", "7.5", False),
    ({"hardware_compatibility": "same-compute-capability"}, "10.13.0.35", "8.9", False),
], ids=["vc-later", "vc-earlier", "vc-other-major", "exact-only", "ampere-8.0", "ampere-12.0", "ampere-7.5",
        "same-cc"])
def test_version_and_hardware_compatible_plans_run_where_tensorrt_says(tmp_path, options, version, capability,
                                                                       runs):
    """TensorRT's developer guide: a version-compatible plan runs on later releases of its major version; AMPERE_PLUS
    on compute capability 8.0 and later; otherwise the builder's TensorRT and compute capability."""
    plan = write_plan(tmp_path, options={"opt_level": 3, **options})
    info = read_plan_info(plan)
    assert (compatibility_problems(info, version, capability, "GPU") == []) is runs
    if not runs:
        with pytest.raises(UserError, match=r"it runs on TensorRT 10\.13\.0\.35"):
            check_compatible(info, plan, version, capability, "GPU")


def test_where_a_plan_runs_is_said_in_words(tmp_path):
    options = {"version_compatible": True, "hardware_compatibility": "ampere+"}
    both = read_plan_info(write_plan(tmp_path, options=options))
    assert where_it_runs(both) == ("TensorRT 10.13.0.35 or a later 10.x (version-compatible), on any GPU of compute "
                                   "capability 8.0 or later (Ampere+)")
    assert where_it_runs(read_plan_info(write_plan(tmp_path))) == (
        "TensorRT 10.13.0.35 only, on GPUs of compute capability 9.0 like the NVIDIA H200 it was built on")
    with pytest.raises(UserError, match=r"hardware_compatibility=sm86 is not one of none, ampere\+"):
        build_options_error = BuildOptions(hardware_compatibility="sm86")
        build_options_error.batches()


def test_triton_repo_names_where_a_plan_runs_and_the_flag_a_version_compatible_one_needs(tmp_path, cli):
    plan = write_plan(tmp_path, options={"version_compatible": True})
    code, out, err = cli("triton-repo", plan, "-o", tmp_path / "repo")
    assert code == 0, err + out
    text = " ".join(out.split())
    assert "the plan runs with TensorRT 10.13.0.35 or a later 10.x (version-compatible)" in text
    assert "--backend-config=tensorrt,version-compatible=true" in text
