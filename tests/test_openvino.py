"""The OpenVINO backend: every artifact of digits_resnet opened with OpenVINO and with ONNX Runtime on fresh random
inputs (FP32 within the FP32 bounds of ORT, INT8 within the kernel-check bounds of the file's exact Q/DQ math),
held-out accuracy through `parity --backend openvino`, BF16 where the CPU has it (refused where it has not, also
with an injected CPU), the overflow warning on an injected saturating CPU, `auto` against the committed bench
results, and the missing-package message."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import onebyone
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import read_manifest
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.cpu import Cpu, parse_cpuinfo, this_cpu
from onebyone.runtime.core.errors import Int8OverflowWarning, UserError
from onebyone.runtime.parity.kernel_check import check_kernels, fresh_inputs
from onebyone.runtime.parity.metrics import compare
from onebyone.runtime.sessions import choice, openvino_backend
from onebyone.runtime.sessions.choice import FASTEST, auto_engine
from onebyone.runtime.sessions.openvino_backend import bf16_refusal, precision_hint
from tests.cpus import EPYC, SAPPHIRE_RAPIDS
from tests.graphs import pointwise_qdq
from tests.helpers import REPO

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'onebyone[openvino]')")

ARTIFACTS = ["model.onnx", "model.fp16.onnx", "model.int8-trt.onnx", "model.int8-trt-fp32.onnx", "model.int8-ort.onnx"]
# The FP16-float trt file (TensorRT's default) is left out of the fresh-input kernel check: on digits_resnet an FP16
# rounding before a QuantizeLinear moves values across quantization steps, and OpenVINO, which computes the float
# parts in f32, lands 0.035–0.05 from the file's exact math (docs/openvino.md); the held-out parity below covers it.
# The FP32-float trt file is the CPU form.
AGREEING = [a for a in ARTIFACTS if a != "model.int8-trt.onnx"]
HAS_BF16 = bf16_refusal(this_cpu()) is None
INT8_DROP = 0.5  # held-out accuracy points


@pytest.fixture(scope="module")
def digits(bundle_copy) -> Path:
    """digits_resnet with FP16 and both INT8 flavours (one calibration on the digits calibration split)."""
    bundle = bundle_copy("digits_resnet")
    source = bundle / "model.onnx"
    assert onebyone_cli("quantize", source, "--precision", "fp16", "--calib", "digits") == 0
    assert onebyone_cli("quantize", source, "--precision", "int8", "--calib", "digits", "--flavour", "trt") == 0
    assert onebyone_cli("quantize", source, "--precision", "int8", "--calib", bundle / "model.calib.json",
                        "--flavour", "ort") == 0
    assert onebyone_cli("quantize", source, "--precision", "int8", "--calib", bundle / "model.calib.json",
                        "--float-dtype", "fp32", "-o", bundle / "model.int8-trt-fp32.onnx") == 0
    return bundle


def onebyone_cli(*args: object) -> int:
    from onebyone.runtime.commands.main import main

    return main([str(a) for a in args])


@pytest.mark.parametrize("artifact", AGREEING)
def test_openvino_agrees_with_onnx_runtime_on_fresh_inputs(digits, artifact, rng):
    """Both engines open the artifact with its self-check (golden torch outputs; kernel check for INT8); on 64 fresh
    inputs OpenVINO's outputs are finite and complete, FP32/FP16 within the fp32 bound of ORT's, INT8 within the
    kernel-check bounds of the file's exact Q/DQ math."""
    path = digits / artifact
    with onebyone.open(path, "openvino") as ov, onebyone.open(path, "onnxruntime") as ort:
        assert ov.backend == "openvino" and ov.self_check is not None and ov.self_check.ok
        assert "OpenVINO" in ov.device and this_cpu().cpu_class in ov.device and "f32" in ov.device
        assert [(s.name, s.dtype, s.shape) for s in ov.inputs] == [(s.name, s.dtype, s.shape) for s in ort.inputs]
        assert [(s.name, s.shape) for s in ov.outputs] == [(s.name, s.shape) for s in ort.outputs]
        inputs = fresh_inputs(Golden.load(digits / "golden.npz").inputs, 64, rng)
        got, want = ov.run(inputs), ort.run(inputs)
        for size in (1, 3, 7):  # one dynamic-batch compile serves every batch size
            alone = ov.run({"input": inputs["input"][:size]})["logits"]
            assert np.abs(alone - got["logits"][:size]).max() <= 1e-5 * np.abs(got["logits"]).max(), size
    assert got.keys() == want.keys()
    for name, values in got.items():
        assert values.shape == want[name].shape and np.isfinite(values).all(), name
    if artifact.startswith("model.int8"):
        kernels = check_kernels(path, inputs, got)
        assert kernels.ok, kernels.describe()
        print(f"{artifact}: OpenVINO {kernels.describe()}")
    else:
        parity = compare(want, got, TOLERANCES["fp32"])
        assert parity.metrics.max_rel <= TOLERANCES["fp32"].max_rel, parity.describe()


def test_held_out_accuracy_on_openvino(digits, cli, tmp_path):
    """`parity --backend openvino` on the held-out split: every artifact within its bounds of torch, INT8 within
    the kernel check, both INT8 flavours within 0.5 pt of the FP32 accuracy."""
    code, out, err = cli("parity", digits, *(digits / a for a in ARTIFACTS), "--data", "digits", "--backend",
                         "openvino", "--no-layers", "--json", tmp_path / "parity.json")
    assert code == 0, out + err
    report = {Path(c["artifact"]).name: c for c in json.loads((tmp_path / "parity.json").read_text())["candidates"]}
    assert {r["backend"] for r in report.values()} == {"openvino"}
    reference = report["model.onnx"]["metrics"]["accuracy_reference"]
    for artifact in ("model.int8-trt.onnx", "model.int8-ort.onnx"):
        drop = 100 * (reference - report[artifact]["metrics"]["accuracy_candidate"])
        print(f"{artifact} on OpenVINO: accuracy {report[artifact]['metrics']['accuracy_candidate']:.2%}, "
              f"drop {drop:.2f} pt, kernel rel-L2 {report[artifact]['kernel']['metrics']['rel_l2']:.2e}")
        assert drop <= INT8_DROP and report[artifact]["kernel"]["ok"]


@pytest.mark.skipif(not HAS_BF16, reason=f"no AVX512-BF16/AMX on this CPU ({this_cpu().cpu_class})")
def test_bf16_artifact_runs_on_openvino_in_bf16(digits, cli, tmp_path, rng):
    """quantize --precision bf16: the manifest records it with the bf16 row; it opens on OpenVINO with the bf16
    hint (auto too), differs from FP32 by BF16 rounding on fresh noise inputs (more than FP32 rounding, within the
    bf16 elementwise and cosine bounds; top-1 is judged on real data, where logits do not tie), and on the held-out
    split stays within every bf16 bound of torch. ONNX Runtime refuses it."""
    code, out, err = cli("quantize", digits / "model.onnx", "--precision", "bf16")
    assert code == 0, out + err
    record = read_manifest(digits).artifacts["model.bf16.onnx"]
    assert record.precision == "bf16" and record.tolerance == TOLERANCES["bf16"]
    inputs = fresh_inputs(Golden.load(digits / "golden.npz").inputs, 64, rng)
    with onebyone.open(digits / "model.bf16.onnx") as bf16, onebyone.open(digits / "model.onnx", "openvino") as fp32:
        assert bf16.backend == "openvino" and "bf16" in bf16.device and bf16.self_check.ok
        no_decisions = dataclasses.replace(TOLERANCES["bf16"], min_top1=None)  # noise inputs tie; real data below
        parity = compare(fp32.run(inputs), bf16.run(inputs), no_decisions)
    assert parity.ok, parity.describe()
    assert parity.metrics.max_rel > TOLERANCES["fp32"].max_rel, "BF16 rounding was expected, FP32 was computed"
    code, out, err = cli("parity", digits, digits / "model.bf16.onnx", "--data", "digits")
    assert code == 0 and "bf16" in out, out + err
    with pytest.raises(UserError, match=r"bf16 artifact.*backend=openvino"):  # Python's spelling of the option
        onebyone.open(digits / "model.bf16.onnx", "onnxruntime")
    code, _, err = cli("infer", digits / "model.bf16.onnx", "--backend", "onnxruntime", "-i", digits / "golden.npz")
    assert code == 2 and "open it with --backend openvino" in err, err  # the CLI's


def test_bf16_is_refused_without_bf16_instructions(digits, cli, monkeypatch, tmp_path):
    """Injected AVX2 CPU: quantize --precision bf16 exits 2 naming what is missing and writes nothing; opening a bf16
    artifact is refused too."""
    avx2 = parse_cpuinfo(EPYC, "x86_64")
    assert "AVX512-BF16 or AMX-BF16" in bf16_refusal(avx2)
    assert bf16_refusal(parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64")) is None
    assert precision_hint("fp32", avx2) == precision_hint("int8", avx2) == "f32"
    with pytest.raises(UserError, match="AVX512-BF16"):
        precision_hint("bf16", avx2)
    monkeypatch.setattr("onebyone.runtime.core.cpu.this_cpu", lambda: avx2)
    before = sorted(p.name for p in digits.iterdir())
    output = tmp_path / "refused.bf16.onnx"
    code, _, err = cli("quantize", digits / "model.onnx", "--precision", "bf16", "-o", output)
    assert code == 2 and "AVX512-BF16 or AMX-BF16" in err and "Traceback" not in err
    assert not output.exists() and sorted(p.name for p in digits.iterdir()) == before


def test_openvino_warns_on_overflow_prone_weights_on_a_saturating_cpu(rng, tmp_path, monkeypatch):
    """The INT8 issue's warning, on OpenVINO too: injected AVX2 CPU, full-range weights warn; safe ones do not."""
    full, safe = (pointwise_qdq(rng, weight_range, tmp_path) for weight_range in ("full", "safe"))
    monkeypatch.setattr(openvino_backend, "this_cpu", lambda: parse_cpuinfo(EPYC, "x86_64"))
    with pytest.warns(Int8OverflowWarning, match=r"w_quantized \(conv\).*--weight-range safe"):
        onebyone.open(full, "openvino").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", Int8OverflowWarning)
        onebyone.open(safe, "openvino").close()


def cpu_of_class(name: str) -> Cpu:
    features = {"x86 AMX + VNNI": {"avx2", "avx512f", "avx512_vnni", "amx_int8"},
                "x86 VNNI": {"avx2", "avx512f", "avx512_vnni"}, "x86 AVX2 without VNNI": {"avx2"}}[name]
    return Cpu("injected", "x86_64", frozenset(features))


def test_auto_follows_the_committed_measurements():
    """FASTEST holds exactly what each committed bench/openvino-*.json measured: a kind runs on OpenVINO where it was
    faster than ONNX Runtime (by the bench's margin) on ResNet-50 batch 8 with a passing kernel check. Unmeasured
    classes and kinds, GPU machines, files of unknown kind and a missing package stay on ONNX Runtime; bf16 always runs
    on OpenVINO."""
    results = sorted((REPO / "bench").glob("openvino-*.json"))
    assert results, "no committed OpenVINO bench results"
    measured = {}
    for path in results:
        record = json.loads(path.read_text())
        measured[record["machine"]["cpu"]["class"]] = {
            kind: "openvino" for kind, row in record["auto"].items() if row["openvino_faster"] and row["kernel_ok"]}
    assert measured == {cls: kinds for cls, kinds in FASTEST.items()}
    for cls, kinds in FASTEST.items():
        cpu = cpu_of_class(cls)
        for kind in ("fp32", "fp16", "int8-trt", "int8-ort"):
            assert auto_engine(kind, cpu, gpu=False, openvino_installed=True) == kinds.get(kind, "onnxruntime")
            assert auto_engine(kind, cpu, gpu=True, openvino_installed=True) == "onnxruntime"
            assert auto_engine(kind, cpu, gpu=False, openvino_installed=False) == "onnxruntime"
    unknown = Cpu("injected", "aarch64", frozenset())
    assert auto_engine("int8-trt", unknown, gpu=False, openvino_installed=True) == "onnxruntime"
    assert auto_engine(None, cpu_of_class("x86 VNNI"), gpu=False, openvino_installed=True) == "onnxruntime"
    assert auto_engine("bf16", unknown, gpu=True, openvino_installed=True) == "openvino"


def test_auto_opens_the_engine_the_table_names(digits, monkeypatch):
    """With an injected table naming OpenVINO for int8-ort on this CPU's class, `auto` opens the ort file on it and
    the trt file (not in the table) on ONNX Runtime."""
    monkeypatch.setattr(choice, "FASTEST", {this_cpu().cpu_class: {"int8-ort": "openvino"}})
    monkeypatch.setattr("onebyone.runtime.sessions.onnxruntime_backend.nvidia_driver_present", lambda: False)
    with onebyone.open(digits / "model.int8-ort.onnx") as session:
        assert session.backend == "openvino"
    with onebyone.open(digits / "model.int8-trt.onnx") as session:
        assert session.backend == "onnxruntime"


def test_auto_never_picks_an_engine_whose_kernel_check_failed_here(bundle_copy, cli, monkeypatch, rng):
    """`auto` opens an INT8 file on the table's engine only where the file passed its kernel check on that engine on
    this CPU class, as recorded when it was written or verified. OpenVINO made to compute something else (noise of
    twice the kernel bound on its outputs): verify reports its FAIL, records it, exits 0 because ONNX Runtime, which
    `auto` now picks, passes; a file never checked here stays on ONNX Runtime too."""
    monkeypatch.setattr(choice, "FASTEST", {this_cpu().cpu_class: {"int8-ort": "openvino"}})
    monkeypatch.setattr("onebyone.runtime.sessions.onnxruntime_backend.nvidia_driver_present", lambda: False)
    bundle = bundle_copy("digits_resnet")
    artifact = bundle / "model.int8-ort.onnx"
    code, out, err = cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits",
                         "--flavour", "ort")
    assert code == 0, err + out
    record = read_manifest(bundle).artifacts[artifact.name]
    assert record.kernel_check_passed(this_cpu().cpu_class, "openvino") is True
    with onebyone.open(artifact) as session:
        assert session.backend == "openvino"
    original = openvino_backend.OpenVinoSession._run

    def noisy(self, feeds, output_names):
        outputs = original(self, feeds, output_names)
        noise = {name: rng.standard_normal(value.shape) for name, value in outputs.items()}
        return {name: (value + 2 * TOLERANCES["int8-kernel"].max_rel_l2 * np.linalg.norm(value)
                       / np.linalg.norm(noise[name]) * noise[name]).astype(value.dtype)
                for name, value in outputs.items()}

    monkeypatch.setattr(openvino_backend.OpenVinoSession, "_run", noisy)
    code, out, err = cli("verify", bundle)
    assert code == 0, err + out
    line = next(line for line in out.splitlines() if line.strip().startswith("openvino"))
    assert "kernel check FAIL" in line and "not used by auto here" in line
    assert "(auto)" in next(line for line in out.splitlines() if line.strip().startswith("onnxruntime"))
    assert read_manifest(bundle).artifacts[artifact.name].kernel_check_passed(this_cpu().cpu_class,
                                                                               "openvino") is False
    with onebyone.open(artifact) as session:
        assert session.backend == "onnxruntime"
    assert read_manifest(bundle).artifacts[artifact.name].auto_engine[this_cpu().cpu_class] == "onnxruntime"
    common = ("--instance-kind", "cpu", "-o")
    code, out, err = cli("triton-repo", artifact, "--backend", "openvino", *common, bundle.parent / "refused")
    assert code == 2 and "Triton's openvino backend would compute something else" in err, err + out
    assert "--backend onnxruntime" in err and not (bundle.parent / "refused").exists()
    assert cli("triton-repo", artifact, "--backend", "onnxruntime", *common, bundle.parent / "accepted")[0] == 0
    never = dataclasses.replace(record, kernel_checks=None)
    assert auto_engine("int8-ort", this_cpu(), False, True,
                       lambda engine: never.kernel_check_passed(this_cpu().cpu_class, engine)) == "onnxruntime"


def test_without_openvino_the_message_names_the_extra(digits, cli, monkeypatch, tmp_path):
    """openvino not importable: --backend openvino exits 2 naming `onebyone[openvino]`, no traceback; auto still
    opens on ONNX Runtime."""
    monkeypatch.setitem(sys.modules, "openvino", None)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    code, _, err = cli("infer", digits / "model.onnx", "--input", tmp_path / "x.npy", "--backend", "openvino")
    assert code == 2 and "pip install 'onebyone[openvino]'" in err and "Traceback" not in err
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)  # the registry finds no openvino
    with onebyone.open(digits / "model.int8-ort.onnx") as session:
        assert session.backend == "onnxruntime"


def test_triton_repo_for_the_openvino_backend(digits, cli, tmp_path):
    """triton-repo --backend openvino: ModelConfig with backend openvino, model.onnx as default_model_filename, the
    backend's string parameters, KIND_CPU; a GPU instance kind is refused."""
    from tests.formats import parse_config as parse

    code, out, err = cli("triton-repo", digits / "model.int8-trt.onnx", "--backend", "openvino", "-o",
                         tmp_path / "repo", "--performance-hint", "THROUGHPUT", "--instances", "2", "--threads", "2")
    assert code == 0, out + err
    (folder,) = (tmp_path / "repo").iterdir()
    config = parse(folder / "config.pbtxt")
    assert config.backend == "openvino" and config.default_model_filename == "model.onnx"
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "2"}
    assert (folder / "1" / "model.onnx").read_bytes() == (digits / "model.int8-trt.onnx").read_bytes()
    code, _, err = cli("triton-repo", digits / "model.onnx", "--backend", "openvino", "--instance-kind", "gpu",
                       "-o", tmp_path / "gpu")
    assert code == 2 and "KIND_CPU" in err


@pytest.mark.parametrize(("rel_l2", "eligible"), [(0.03, True), (0.048, False)])
def test_auto_leaves_onnx_runtime_only_with_a_margin(rel_l2, eligible, rng):
    """A kernel check that passes within 10% of its rel-L2 bound (0.05) keeps the safer engine: sampling noise
    around the bound (OpenVINO's `trt` files measured 0.048–0.052 on one CPU) cannot flip `auto` between runs."""
    from onebyone.runtime.parity.kernel_check import KernelCheck

    reference = rng.standard_normal((64, 10))
    noise = rng.standard_normal(reference.shape)
    candidate = reference + rel_l2 * np.linalg.norm(reference) / np.linalg.norm(noise) * noise
    parity = compare({"y": reference}, {"y": candidate}, TOLERANCES["int8-kernel"])
    check = KernelCheck(parity.metrics, parity.tolerance, this_cpu(), len(reference))
    assert check.ok and check.with_margin is eligible and check.as_record()["with_margin"] is eligible


def test_two_verify_runs_check_the_same_samples_and_choose_the_same_engine(digits, cli):
    """The kernel check's fresh samples are seeded by the file's content: two `verify` runs on one machine measure
    the same numbers and record the same `auto` engine."""
    runs = []
    for _ in range(2):
        code, out, err = cli("verify", digits)
        assert code == 0, err + out
        record = read_manifest(digits).artifacts["model.int8-trt.onnx"]
        runs.append((record.kernel_checks[this_cpu().cpu_class], record.auto_engine[this_cpu().cpu_class]))
    (first, chosen), (second, again) = runs
    assert chosen == again
    assert {engine: check["metrics"] for engine, check in first.items()} == \
        {engine: check["metrics"] for engine, check in second.items()}
