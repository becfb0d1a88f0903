"""onebyone.open: torch and ONNX Runtime sessions agree on every zoo model; inputs are validated with clear
messages; bundles self-check on open and refuse tampered golden outputs or modified artifacts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import onebyone.runtime.sessions.opening as sessions
from onebyone.export.zoo import ZOO, instantiate
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import GOLDEN_NAME
from onebyone.runtime.bundle.tensors import BatchRange, TensorSpec, prepare_inputs
from onebyone.runtime.core.errors import CheckFailed, UserError
from onebyone.runtime.core.ort_session import intra_op_threads
from onebyone.runtime.sessions.onnxruntime_backend import choose_providers
from onebyone.runtime.sessions.self_check import SelfCheckFailed
from tests.helpers import FP32_REL_TOL, REPO, ZOO_PARAMS


@pytest.mark.parametrize("name", ZOO_PARAMS)
def test_torch_and_onnxruntime_sessions_agree(name, exported, rng):
    bundle = exported(name).bundle
    with sessions.open(bundle) as ort_session, sessions.open(name) as torch_session:
        assert ort_session.backend == "onnxruntime" and torch_session.backend == "torch"
        assert ort_session.self_check is not None and ort_session.self_check.ok  # checked on open
        assert [(s.name, s.dtype, s.shape) for s in ort_session.inputs] == \
               [(s.name, s.dtype, s.shape) for s in torch_session.inputs]
        x = rng.standard_normal((3, *ZOO[name].input_shape), dtype=np.float32)
        got, ref = ort_session.run({"input": x}), torch_session.run({"input": x})
    assert got.keys() == ref.keys()
    for key, value in ref.items():
        assert got[key].shape == value.shape and np.isfinite(got[key]).all()
        error, scale = float(np.abs(got[key] - value).max()), float(np.abs(value).max())
        assert error <= FP32_REL_TOL * scale, f"{key}: max|diff| {error} > {FP32_REL_TOL} x {scale}"


@pytest.fixture(scope="module")
def digits_copy(bundle_copy) -> Path:
    return bundle_copy("digits_resnet")


@pytest.fixture(scope="module")
def digits_session(digits_copy):
    with sessions.open(digits_copy / "model.onnx") as session:
        yield session


def test_a_bundle_can_be_opened_as_its_torch_reference(digits_copy, rng):
    x = rng.uniform(-1, 1, (4, 1, 8, 8)).astype(np.float32)
    with sessions.open(digits_copy, backend="torch") as reference, sessions.open(digits_copy) as onnx:
        assert reference.self_check is not None and reference.self_check.max_abs_diff == 0.0  # golden came from it
        assert reference.model.task == onnx.model.task == "classification"
        assert reference.model.preprocess == onnx.model.preprocess is not None
        np.testing.assert_allclose(onnx.run(x)["logits"], reference.run(x)["logits"], rtol=0, atol=1e-4 * 10)


@pytest.mark.parametrize(("make_inputs", "message"), [
    (lambda x: {"image": x}, "unknown input(s) ['image']; the model's inputs are 'input' float32 [-1, 1, 8, 8]"),
    (lambda x: {}, "missing input(s): 'input' float32 [-1, 1, 8, 8]"),
    (lambda x: x + np.float64(1e-9), "is float64 and casting it to the model's float32 would change its values"),
    (lambda x: x.astype(str), "input 'input' is <U"),
    (lambda x: x[0], "has rank 3 (shape [1, 8, 8]); the model takes rank 4 [-1, 1, 8, 8] — add a batch dimension"),
    (lambda x: x[:, :, :, :5], "has shape [2, 1, 8, 5]; the model takes [-1, 1, 8, 8] (axis 3 differs)"),
    (lambda x: x[:0], "has an empty dimension (shape [0, 1, 8, 8])"),
    (lambda x: np.where(x > 0.5, np.nan, x), "NaN/Inf value(s)"),
    (lambda x: torch.from_numpy(x).to(torch.bfloat16), "torch.bfloat16 tensor, which has no numpy equivalent"),
])
def test_input_errors_are_named(digits_session, rng, make_inputs, message):
    x = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    with pytest.raises(UserError) as error:
        digits_session.run(make_inputs(x))
    assert message in str(error.value)


def test_unknown_output_is_named(digits_session):
    with pytest.raises(UserError, match=r"unknown output\(s\) \['probs'\]; the model's outputs are \['logits'\]"):
        digits_session.run(np.zeros((1, 1, 8, 8), np.float32), outputs=["probs"])


def test_lossless_inputs_are_cast_and_give_the_same_outputs(digits_session, rng):
    x = rng.uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)
    expected = digits_session.run({"input": x})["logits"]
    np.testing.assert_array_equal(digits_session.run(x.astype(np.float64))["logits"], expected)  # exact values
    np.testing.assert_array_equal(digits_session.run(torch.from_numpy(x))["logits"], expected)
    ints = rng.integers(-1, 2, (3, 1, 8, 8)).astype(np.int8)  # int8 → float32 is always exact
    np.testing.assert_array_equal(digits_session.run(ints)["logits"],
                                  digits_session.run(ints.astype(np.float32))["logits"])


def test_batch_outside_the_session_range_is_refused():
    spec = TensorSpec("input", np.dtype(np.float32), (-1, 3, 4, 4))
    limits = BatchRange(1, 8, " (the engine's optimization profile); rebuild with --max-batch")
    assert prepare_inputs([spec], np.zeros((8, 3, 4, 4), np.float32), limits)["input"].shape == (8, 3, 4, 4)
    with pytest.raises(UserError, match=r"has batch 9; this session accepts batch 1..8 \(the engine's optimization "
                                        r"profile\); rebuild with --max-batch"):
        prepare_inputs([spec], np.zeros((9, 3, 4, 4), np.float32), limits)


def test_a_bare_array_needs_a_single_input_model():
    specs = [TensorSpec("a", np.dtype(np.float32), (-1, 2)), TensorSpec("b", np.dtype(np.float32), (-1, 2))]
    with pytest.raises(UserError, match="the model has 2 inputs"):
        prepare_inputs(specs, np.zeros((1, 2), np.float32))


def test_tampered_golden_outputs_fail_the_self_check_with_the_measured_error(digits_copy, tmp_path):
    bundle = tmp_path / "digits_resnet"
    shutil.copytree(digits_copy, bundle)
    golden = Golden.load(bundle / GOLDEN_NAME)
    shifted = {name: value + 1.5 for name, value in golden.outputs.items()}
    Golden(inputs=golden.inputs, outputs=shifted).save(bundle / GOLDEN_NAME)
    scale = max(float(np.abs(v).max()) for v in shifted.values())
    with pytest.raises(SelfCheckFailed) as error:
        sessions.open(bundle / "model.onnx")
    text = str(error.value)
    assert "fails its self-check against the golden torch outputs: FAIL  max|diff| 1.5 " in text
    assert f"= {1.5 / scale:.2e} x max|ref| (tolerance 0.0001)" in text
    assert "golden.npz itself changed since export" in text
    with sessions.open(bundle / "model.onnx", self_check=False) as unchecked:  # the user can still inspect it
        assert unchecked.self_check is None


def test_a_modified_artifact_is_refused(digits_copy, tmp_path):
    bundle = tmp_path / "digits_resnet"
    shutil.copytree(digits_copy, bundle)
    model = onnx.load(str(bundle / "model.onnx"))
    model.doc_string = "edited by hand"
    onnx.save(model, str(bundle / "model.onnx"))
    with pytest.raises(SelfCheckFailed, match="was modified after it was recorded"):
        sessions.open(bundle / "model.onnx")


def test_a_failed_self_check_is_a_failed_check_exit_1_not_a_user_error(digits_copy, tmp_path, cli):
    """README: exit 1 means a check failed, 2 a user error; a refused artifact is the former."""
    bundle = tmp_path / "digits_resnet"
    shutil.copytree(digits_copy, bundle)
    golden = Golden.load(bundle / GOLDEN_NAME)
    Golden(inputs=golden.inputs, outputs={k: v + 1.5 for k, v in golden.outputs.items()}).save(bundle / GOLDEN_NAME)
    with pytest.raises(SelfCheckFailed) as error:
        sessions.open(bundle / "model.onnx")
    assert isinstance(error.value, CheckFailed) and not isinstance(error.value, UserError)
    x = tmp_path / "x.npy"
    np.save(x, golden.inputs["input"][:1])
    code, out, err = cli("infer", bundle / "model.onnx", "--input", x)
    assert code == 1 and err.startswith("check failed:") and "fails its self-check" in err and out == ""


def test_an_artifact_outside_a_bundle_opens_unchecked(digits_copy, tmp_path):
    shutil.copy(digits_copy / "model.onnx", tmp_path / "loose.onnx")
    with sessions.open(tmp_path / "loose.onnx") as session:
        assert session.self_check is None and "not recorded in a bundle manifest" in session.self_check_note
        assert session.model.name == "digits_resnet" and session.model.preprocess is not None  # from metadata


@pytest.mark.parametrize(("target", "backend", "message"), [
    ("missing.onnx", "auto", "missing.onnx does not exist; open an .onnx file, a TensorRT .plan, a bundle"),
    ("not_a_model", "auto", "not_a_model does not exist"),
    ("{bundle}/model.onnx", "tensorrt", "is ONNX; build a TensorRT plan from it with `onebyone build"),
    ("{bundle}", "tensorrt", "has no tensorrt-plan artifact; build one with `onebyone build`"),
    ("{bundle}/golden.npz", "auto", "unknown artifact type .npz"),
    ("{bundle}", "tvm", "unknown backend 'tvm'"),
    ("{bundle}", "weights", "weights and input_shape apply to torch models only"),
    ("digits_resnet", "providers", "providers apply to ONNX files run by onnxruntime only"),
])
def test_open_errors(digits_copy, target, backend, message):
    options = {"weights": {"weights": digits_copy / "model.pth"}, "providers": {"providers": ["cpu"]}}
    with pytest.raises(UserError) as error:
        sessions.open(target.format(bundle=digits_copy), "auto" if backend in options else backend,
                      **options.get(backend, {}))
    assert message in str(error.value)


def test_provider_choice():
    all_providers = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(None, all_providers, driver=False, tensorrt_libs=True) == ["CPUExecutionProvider"]
    assert choose_providers(None, all_providers, driver=True, tensorrt_libs=False) == \
        ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(None, all_providers, driver=True, tensorrt_libs=True) == all_providers
    assert choose_providers(["cuda", "cpu"], all_providers, driver=True, tensorrt_libs=False) == all_providers[1:]
    with pytest.raises(UserError, match="CUDAExecutionProvider needs an NVIDIA GPU and its driver; none was found"):
        choose_providers(["cuda"], all_providers, driver=False, tensorrt_libs=False)
    with pytest.raises(UserError, match="this onnxruntime build has no CUDAExecutionProvider"):
        choose_providers(["cuda"], ["CPUExecutionProvider"], driver=True, tensorrt_libs=False)
    with pytest.raises(UserError, match="unknown execution provider 'rocm'"):
        choose_providers(["rocm"], all_providers, driver=True, tensorrt_libs=False)


IMPORT_RECORDER = """
import sys
attempts = []
class Recorder:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorrt", "pycuda") or name.startswith("cuda.bindings"):
            attempts.append(name)
        return None
sys.meta_path.insert(0, Recorder())
"""


def imports_attempted(code: str) -> list[str]:
    """The tensorrt/pycuda/cuda-python imports `code` attempts, recorded by a meta-path finder (so an attempt counts
    even where the package is not installed and the import fails)."""
    done = subprocess.run([sys.executable, "-c", IMPORT_RECORDER + code + "\nprint('attempts', *attempts)"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].split()[1:]


def test_runtime_imports_no_tensorrt_nor_cuda_package(digits_copy):
    code = ("import numpy, onebyone, onebyone.runtime.bundle.plan, onebyone.runtime.sessions.tensorrt_backend\n"
            "import onebyone.runtime.sessions.tensorrt_build\n"
            f"s = onebyone.open({str(digits_copy / 'model.onnx')!r})\n"
            "s.run(numpy.zeros((1, 1, 8, 8), 'float32'))")
    assert imports_attempted(code) == []


def test_the_import_recorder_sees_an_attempt_that_fails():
    """On this machine tensorrt is not installed: the attempt still counts, so the test above can fail here."""
    code = ("from onebyone.runtime.sessions.tensorrt_backend import import_tensorrt\n"
            "try:\n    import_tensorrt()\nexcept Exception:\n    pass")
    assert imports_attempted(code)[:1] == ["tensorrt"]


def test_exactly_one_module_imports_tensorrt_one_openvino_and_one_the_cuda_drivers():
    sources = [p for folder in ("export", "optimize", "runtime") for p in (REPO / folder).rglob("*.py")]
    importers = {name: sorted(str(p.relative_to(REPO)) for p in sources
                              if f"import {name}" in p.read_text() or f"from {name}" in p.read_text())
                 for name in ("tensorrt", "pycuda", "cuda.bindings", "openvino")}
    assert importers == {"tensorrt": ["runtime/sessions/tensorrt_backend.py"],
                         "openvino": ["runtime/sessions/openvino_backend.py"],
                         "pycuda": ["runtime/sessions/cuda_memory.py"],
                         "cuda.bindings": ["runtime/sessions/cuda_memory.py"]}


def test_a_factory_with_weights_is_a_torch_session(tmp_path, rng):
    trained = instantiate(ZOO["digits_resnet"])
    weights = tmp_path / "digits.pth"
    torch.save(trained.state_dict(), weights)
    x = rng.uniform(-1, 1, (5, 1, 8, 8)).astype(np.float32)
    with torch.inference_mode():
        expected = trained(torch.from_numpy(x)).numpy()
    factory = "export.models.digits:build_digits_resnet"  # the untrained architecture
    with sessions.open(factory, weights=weights, input_shape=(1, 8, 8)) as loaded, \
            sessions.open(factory, input_shape=(1, 8, 8)) as untrained:
        assert loaded.backend == "torch" and loaded.inputs[0].shape == (-1, 1, 8, 8)
        np.testing.assert_array_equal(loaded.run(x)["logits"], expected)
        assert not np.allclose(untrained.run(x)["logits"], expected)  # so the weights were what made it equal


def test_one_module_builds_onnx_runtime_sessions():
    """Every session onebyone (and its benchmarks) opens comes from runtime/core/ort_session.py; the one other
    builder is the stand-in for Triton's onnxruntime backend, which must build its session as Triton does."""
    sources = [p for folder in ("export", "optimize", "runtime", "bench") for p in (REPO / folder).rglob("*.py")]
    builders = sorted(str(p.relative_to(REPO)) for p in sources
                      if "InferenceSession(" in p.read_text() or "SessionOptions(" in p.read_text())
    assert builders == ["bench/triton_stand_in.py", "runtime/core/ort_session.py"]


PINNED_SESSION = """
import os, sys
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from onebyone.runtime.core.ort_session import ort_session
print(ort_session(sys.argv[1], "all").get_session_options().intra_op_num_threads)
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a Linux process allowed on two or more CPUs")
def test_a_session_pinned_to_one_cpu_runs_one_thread(digits_copy):
    """ORT sizes its thread pool by the machine's cores, not by the CPUs this process may use: pinned to one core
    (taskset, a container's cpuset) it would run two threads on it and halve its speed. The helper sizes it by the
    process's affinity."""
    result = subprocess.run([sys.executable, "-c", PINNED_SESSION, str(digits_copy / "model.onnx")],
                            capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "1"


IDLE_AFTER_RUN = """
import sys, time
import numpy as np
from pathlib import Path
from onebyone.runtime.core.ort_session import ort_session
config = {"session.force_spinning_stop": "0"} if sys.argv[2] == "spinning" else None  # "spinning": ORT's default
session = ort_session(Path(sys.argv[1]), "all", config=config)
name = session.get_inputs()[0].name
x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
burnt = []
for _ in range(5):
    session.run(None, {name: x})
    started = time.process_time()
    time.sleep(0.1)
    burnt.append(time.process_time() - started)
print(min(burnt))
"""


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a process allowed on two or more CPUs (a thread pool with workers)")
def test_a_session_leaves_the_cpu_when_a_run_returns(digits_copy):
    """ORT's pool threads spin on after a Run returns (measured: ~20 ms of CPU on 2 cores), taking the CPU from
    whatever the process does next — the server's request handling, another engine's run. A onebyone session's
    threads stop when the run returns: the process burns under 5 ms of CPU in the 100 ms that follow (the least of
    5 runs, in a process of its own). With ORT's default restored it prints what spinning burns, unasserted."""
    burnt = {}
    for mode in ("onebyone", "spinning"):
        result = subprocess.run([sys.executable, "-c", IDLE_AFTER_RUN, str(digits_copy / "model.onnx"), mode],
                                capture_output=True, text=True, check=True)
        burnt[mode] = float(result.stdout.split()[-1])
        print(f"CPU burnt in the 100 ms after a run, {mode}: {burnt[mode] * 1000:.2f} ms")
    assert burnt["onebyone"] < 0.005, burnt


def test_thread_count_follows_the_affinity_only_when_it_is_narrower():
    assert intra_op_threads(allowed=1, total=2) == 1
    assert intra_op_threads(allowed=3, total=8) == 3
    assert intra_op_threads(allowed=8, total=8) is None  # ORT's own choice (physical cores) stands
