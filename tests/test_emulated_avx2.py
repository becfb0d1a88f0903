"""INT8 on the real kernels of an AVX2-only CPU, on any x86-64 machine: ONNX Runtime and OpenVINO run digits_resnet's
INT8 files under qemu-user as an AMD EPYC-Milan (tests/emulated_avx2.py), and their outputs are held to each file's
exact Q/DQ math computed natively. Full-range weights must fail the kernel check where the engine's int8 kernels
saturate (ORT on the `ort` flavour, OpenVINO on the `trt` flavour) — proof that the emulation reaches those
kernels — and the safe weight range must pass on both engines; the CPU description, the overflow warning and the
BF16 refusal must agree with what the emulated engines report. Skipped, with the reason, without qemu-user."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.core.cpu import parse_cpuinfo
from onebyone.runtime.parity.kernel_check import KERNEL_TOLERANCE, check_kernels, fresh_inputs
from tests.cpus import SAPPHIRE_RAPIDS
from tests.emulated_avx2 import Refused, emulated_cpuinfo, interpreter_command
from tests.helpers import REPO

pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'onebyone[openvino]')")

SAMPLES = 32
ENGINES = ("onnxruntime", "openvino")
FILES = {  # name → quantize options; the trt files with FP32 float parts, the form OpenVINO computes exactly
    "model.safe.int8-trt.onnx": ["--flavour", "trt", "--float-dtype", "fp32", "--weight-range", "safe"],
    "model.full.int8-trt.onnx": ["--flavour", "trt", "--float-dtype", "fp32", "--weight-range", "full"],
    "model.safe.int8-ort.onnx": ["--flavour", "ort", "--weight-range", "safe"],
    "model.full.int8-ort.onnx": ["--flavour", "ort", "--weight-range", "full"],
}
SATURATING = {("onnxruntime", "model.full.int8-ort.onnx"), ("openvino", "model.full.int8-trt.onnx")}
CHILD = """
import json, sys, warnings
import numpy as np
import openvino
import onebyone
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.errors import Int8OverflowWarning
from onebyone.runtime.sessions.openvino_backend import bf16_refusal

folder, engines, names = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
inputs = dict(np.load(f"{folder}/inputs.npz"))
outputs, warned = {}, {}
for engine in engines:
    for name in names:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with onebyone.open(f"{folder}/{name}", engine, self_check=False) as session:
                device = session.device
                outputs[f"{engine}/{name}"] = session.run(inputs)["logits"]
        warned[f"{engine}/{name}"] = any(issubclass(w.category, Int8OverflowWarning) for w in caught)
np.savez(f"{folder}/outputs.npz", **outputs)
record = {"cpu": this_cpu().as_record(), "bf16_refusal": bf16_refusal(this_cpu()), "warned": warned,
          "openvino": openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"), "device": device}
with open(f"{folder}/record.json", "w") as file:
    json.dump(record, file)
"""


def test_the_emulated_cpu_is_described_as_avx2_without_vnni():
    """An AMX Xeon's /proc/cpuinfo, as the emulation lays it over the real one, reads as the AVX2 class."""
    cpu = parse_cpuinfo(emulated_cpuinfo(SAPPHIRE_RAPIDS), "x86_64")
    assert cpu.cpu_class == "x86 AVX2 without VNNI" and cpu.int8_saturates and cpu.features == {"avx2"}
    assert "qemu-x86_64 emulation on Intel(R) Xeon(R) Platinum 8481C" in cpu.model


def test_a_console_script_is_refused_with_the_python_m_form():
    with pytest.raises(Refused, match="python -m onebyone"):
        interpreter_command([str(Path(sys.executable).parent / "onebyone"), "--help"])


@pytest.fixture(scope="module")
def quantized(bundle_copy) -> Path:
    """digits_resnet's INT8 files of both flavours, safe and full weight range (one calibration)."""
    from onebyone.runtime.commands.main import main

    bundle = bundle_copy("digits_resnet")
    calib = "digits"
    for name, options in FILES.items():
        assert main(["quantize", str(bundle / "model.onnx"), "--precision", "int8", "--calib", calib, *options,
                     "-o", str(bundle / name)]) == 0
        calib = str(bundle / "model.calib.json")
    return bundle


def test_int8_on_the_kernels_of_an_avx2_only_cpu(quantized, rng):
    inputs = fresh_inputs(Golden.load(quantized / "golden.npz").inputs, SAMPLES, rng)
    np.savez(quantized / "inputs.npz", **inputs)
    child = subprocess.run([sys.executable, "-m", "tests.emulated_avx2", "python", "-c", CHILD, str(quantized),
                            ",".join(ENGINES), *FILES], cwd=REPO, capture_output=True, text=True, timeout=1500)
    if child.returncode == 2 and child.stderr.startswith("error: "):  # the harness refused: no qemu-user, no namespace
        pytest.skip(child.stderr.strip().splitlines()[0])
    assert child.returncode == 0, child.stderr[-4000:]
    record = json.loads((quantized / "record.json").read_text())
    outputs = dict(np.load(quantized / "outputs.npz"))
    assert record["cpu"]["class"] == "x86 AVX2 without VNNI" and record["cpu"]["int8_saturates"]
    assert "x86 AVX2 without VNNI" in record["device"]
    assert record["bf16_refusal"] and "BF16" not in record["openvino"]  # refused where OpenVINO has none either
    for engine in ENGINES:
        for name in FILES:
            got = outputs[f"{engine}/{name}"]
            assert got.shape == (SAMPLES, 10) and np.isfinite(got).all()
            kernels = check_kernels(quantized / name, inputs, {"logits": got})
            print(f"{engine:<12} {name:<26} rel-L2 {kernels.metrics.rel_l2:.2e} vs the exact Q/DQ math")
            assert record["warned"][f"{engine}/{name}"] == name.startswith("model.full"), (engine, name)
            if (engine, name) in SATURATING:
                assert kernels.metrics.rel_l2 > 2 * KERNEL_TOLERANCE.max_rel_l2, (engine, name)
            else:
                assert kernels.ok, (engine, name, kernels.describe())
