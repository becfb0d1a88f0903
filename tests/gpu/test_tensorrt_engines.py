"""TensorRT engines on a real GPU: `onebyone build` for FP32, FP16 and INT8 ONNX of digits_resnet and resnet50, each
plan checked against the golden torch outputs and against ONNX Runtime (CPU) on fresh inputs, the profile's batch
limits, the refusal of a plan from another TensorRT, zero-copy torch CUDA inputs, and engine timing side by side.

Skipped, with the reason, on machines without an NVIDIA GPU, TensorRT and cuda-python or pycuda
(`pip install 'onebyone[tensorrt]'`).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import onebyone.runtime.sessions.opening as sessions
from onebyone import stages
from onebyone.runtime.bundle.manifest import read_manifest
from onebyone.runtime.bundle.plan import plan_info_path
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.sessions.cuda_memory import driver_installed
from onebyone.runtime.sessions.onnxruntime_backend import nvidia_driver_present
from onebyone.runtime.sessions.self_check import SelfCheckFailed


def _missing() -> str | None:
    if importlib.util.find_spec("tensorrt") is None or not driver_installed():
        return ("needs TensorRT and cuda-python or pycuda (pip install 'onebyone[tensorrt]') on a machine with an "
                "NVIDIA GPU")
    if not nvidia_driver_present():
        return "needs an NVIDIA GPU with its driver (no libcuda found)"
    return None


MISSING = _missing()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(MISSING is not None, reason=MISSING or "")]

ARTIFACTS = {"fp32": "model.opt.onnx", "fp16": "model.opt.fp16.onnx", "int8": "model.opt.int8-trt.onnx"}
MAX_BATCH = 8
MODELS = ["digits_resnet", pytest.param("resnet50", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def built(exported, tmp_path_factory):
    """name → a bundle copy with FP32/FP16/INT8-trt ONNX and a plan built from each (batch 1..MAX_BATCH)."""
    from onebyone.runtime.commands.main import main

    bundles: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in bundles:
            bundle = tmp_path_factory.mktemp("trt") / name
            shutil.copytree(exported(name).bundle, bundle)
            calib = "digits" if name == "digits_resnet" else "random"
            assert main(["optimize", str(bundle / "model.onnx"), "-o", str(bundle / "model.opt.onnx"),
                         "--target", "trt"]) == 0
            assert main(["quantize", str(bundle / "model.opt.onnx"), "--precision", "fp16"]) == 0
            assert main(["quantize", str(bundle / "model.opt.onnx"), "--precision", "int8", "--calib", calib,
                         "--flavour", "trt"]) == 0
            for onnx_name in ARTIFACTS.values():
                assert main(["build", str(bundle / onnx_name), "--max-batch", str(MAX_BATCH),
                             "--timing-cache", str(bundle.parent / "timing.cache")]) == 0
            bundles[name] = bundle
        return bundles[name]

    return build


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("precision", sorted(ARTIFACTS))
def test_engine_matches_golden_and_onnxruntime(built, name, precision, rng):
    bundle = built(name)
    onnx_path = bundle / ARTIFACTS[precision]
    plan = onnx_path.with_suffix(".plan")
    record = read_manifest(bundle).artifacts[plan.name]
    assert record.kind == "tensorrt-plan" and record.precision == precision and record.parity["ok"]
    info = json.loads(plan_info_path(plan).read_text())
    assert info["profiles"]["input"]["max"][0] == MAX_BATCH and info["precision"] == precision
    tolerance = TOLERANCES[precision].max_rel
    with sessions.open(plan) as engine, sessions.open(onnx_path, providers=["cpu"]) as reference:
        assert engine.backend == "tensorrt" and engine.self_check is not None and engine.self_check.ok
        for batch in (1, 3, MAX_BATCH):
            x = rng.standard_normal((batch, *engine.inputs[0].shape[1:])).astype(np.float32)
            got, want = engine.run(x), reference.run(x)
            for key, value in want.items():
                assert got[key].shape == value.shape and np.isfinite(got[key]).all()
                error = float(np.abs(got[key] - value).max())
                assert error <= tolerance * float(np.abs(value).max()), f"{key} batch {batch}: {error}"


def test_verify_checks_the_recorded_plans(built, cli):
    code, out, _ = cli("verify", built("digits_resnet"))
    assert code == 0 and "SKIP" not in out
    for onnx_name in ARTIFACTS.values():
        assert re.search(rf"{re.escape(Path(onnx_name).with_suffix('.plan').name)}\s+\w+\s+PASS .* top-1 9\d\.", out)


def test_batch_above_the_profile_is_refused(built):
    plan = built("digits_resnet") / "model.opt.plan"
    with sessions.open(plan) as engine, pytest.raises(UserError, match=f"accepts batch 1..{MAX_BATCH}"):
        engine.run(np.zeros((MAX_BATCH + 1, 1, 8, 8), np.float32))


def test_a_plan_recorded_for_another_tensorrt_is_refused(built, tmp_path):
    source = built("digits_resnet")
    bundle = tmp_path / "digits_resnet"
    shutil.copytree(source, bundle)
    info_path = plan_info_path(bundle / "model.opt.plan")
    info = json.loads(info_path.read_text())
    info["tensorrt"] = "9.0.0"
    info_path.write_text(json.dumps(info))
    with pytest.raises(UserError, match=r"was built for TensorRT 9\.0\.0, this machine has"):
        sessions.open(bundle / "model.opt.plan", self_check=False)


def test_a_tampered_plan_fails_its_self_check(built, tmp_path):
    bundle = tmp_path / "digits_resnet"
    shutil.copytree(built("digits_resnet"), bundle)
    shutil.copy(bundle / "model.opt.fp16.plan", bundle / "model.opt.plan")
    shutil.copy(plan_info_path(bundle / "model.opt.fp16.plan"), plan_info_path(bundle / "model.opt.plan"))
    with pytest.raises(SelfCheckFailed, match="was modified after it was recorded"):
        sessions.open(bundle / "model.opt.plan")


def test_torch_cuda_inputs_are_used_without_a_copy(built, rng):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here: the zero-copy path needs a CUDA build of torch")
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    with sessions.open(built("digits_resnet") / "model.opt.plan") as engine:
        np.testing.assert_array_equal(engine.run(torch.from_numpy(x).cuda())["logits"], engine.run(x)["logits"])


def test_inspect_shows_int8_layers_in_the_int8_plan(built, cli):
    code, out, err = cli("inspect", built("digits_resnet") / "model.opt.int8-trt.plan", "--json")
    assert code == 0, err
    layers = json.loads(out)["layers"]
    assert layers and any("int8" in layer["outputs"] for layer in layers)
    code, out, _ = cli("inspect", built("digits_resnet") / "model.opt.plan", "--json")
    assert code == 0 and not any("int8" in layer["outputs"] for layer in json.loads(out)["layers"])


def test_a_misaligned_torch_slice_is_copied_not_bound(built, rng):
    """TensorRT needs 256-byte-aligned addresses: a view 64 bytes into an allocation must go through the copy path
    (it was bound as is, leaving the previous address in place) and still give the right answer."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA here: the zero-copy path needs a CUDA build of torch")
    x = rng.standard_normal((5, 1, 8, 8)).astype(np.float32)
    flat = torch.from_numpy(np.concatenate([np.zeros(16, np.float32), x.ravel()])).cuda()
    shifted = flat[16:].view(5, 1, 8, 8)  # 64 bytes past an aligned allocation
    assert shifted.data_ptr() % 256 != 0
    with sessions.open(built("digits_resnet") / "model.opt.plan") as engine:
        np.testing.assert_array_equal(engine.run(shifted)["logits"], engine.run(x)["logits"])


@pytest.mark.slow
def test_reduced_precision_engines_are_faster_than_fp32(built):
    bundle = built("resnet50")
    plans = {precision: bundle / Path(onnx_name).with_suffix(".plan").name
             for precision, onnx_name in ARTIFACTS.items()}
    result = stages.bench([str(plan) for plan in plans.values()], batches=[MAX_BATCH], seconds=3.0,
                          labels=list(plans))
    speedups = {row["artifact"]: row["vs_first"] for row in result.rows}
    print("TensorRT throughput vs FP32, ResNet-50 batch 8:", speedups)
    assert speedups["fp16"] > 1.0 and speedups["int8"] > 1.0


def test_optimization_profiles_cover_two_resolution_ranges(tmp_path, cli):
    """digits_segmenter with a dynamic H×W, built with two profiles: each request runs in a profile that contains
    it, matching torch at its size; a size outside both is refused naming the ranges; inspect lists both."""
    import torch

    from onebyone.export.options import ExportOptions
    from onebyone.export.zoo import ZOO, instantiate
    from onebyone.runtime.bundle.plan import BuildOptions, parse_shapes

    bundle = tmp_path / "seg"
    stages.export("digits_segmenter", ExportOptions(output=bundle, dynamic=("height", "width")))
    profiles = (parse_shapes("input:1x1x24x24..4x1x32x32..8x1x40x40"),
                parse_shapes("input:1x1x40x40..2x1x64x64..4x1x96x96"))
    result = stages.build(bundle / "model.onnx", BuildOptions(shapes=profiles))
    assert result.parity is not None and result.parity.ok
    model = instantiate(ZOO["digits_segmenter"])
    with sessions.open(result.output, "tensorrt") as session:
        for shape in ((8, 1, 32, 24), (3, 1, 96, 64), (1, 1, 40, 40)):
            x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
            with torch.no_grad():
                expected = model(torch.from_numpy(x)).numpy()
            got = session.run(x)["out"]
            assert np.abs(got - expected).max() <= 1e-3 * np.abs(expected).max()
        with pytest.raises(UserError, match=r"fits none of .* optimization profiles .*profile 1: input 1x1x40x40"):
            session.run(np.zeros((1, 1, 128, 128), np.float32))
    code, out, _ = cli("inspect", result.output)
    assert code == 0 and "optimization profile 1: input 1x1x40x40..2x1x64x64..4x1x96x96" in out
