"""INT8 that computes what its Q/DQ says on every x86 CPU: the CPU description (injected /proc/cpuinfo texts of
both CPU classes), the static overflow check proven against an emulation of the non-VNNI int8 dot product, the
kernel check catching that emulation, the safe weight range `quantize` writes by default, and the warning a
saturating CPU gives for an overflow-prone file. Nothing here depends on which CPU runs the tests."""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

import onebyone.runtime.sessions.choice as choice
import onebyone.runtime.sessions.onnxruntime_backend as onnxruntime_backend
from onebyone.optimize.precision.flavours import WEIGHT_LEVELS
from onebyone.runtime.bundle.golden import reference_session, run_session
from onebyone.runtime.bundle.int8_overflow import INT16_PAIR_LIMIT, overflow_prone, worst_pairs
from onebyone.runtime.bundle.manifest import read_manifest
from onebyone.runtime.core.cpu import X86_FEATURES, Cpu, parse_cpuinfo, this_cpu
from onebyone.runtime.core.errors import Int8OverflowWarning
from onebyone.runtime.parity.kernel_check import KERNEL_TOLERANCE, check_kernels
from onebyone.runtime.sessions.opening import open as open_session
from onebyone.runtime.sessions.self_check import SelfCheckFailed
from tests.cpus import EPYC, SAPPHIRE_RAPIDS
from tests.graphs import AMAX, CHANNELS_IN, CHANNELS_OUT, PIXELS, pointwise_qdq

SKYLAKE = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\nflags\t\t: sse avx avx2 avx512f " \
          "avx512dq avx512cd avx512bw avx512vl\n"
ALDER_LAKE = "processor\t: 0\nmodel name\t: 12th Gen Intel(R) Core(TM) i7-12700\nflags\t\t: avx avx2 avx_vnni\n"
GRAVITON3 = "processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics " \
            "fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop sha3 sm3 sm4 asimddp sha512 sve asimdfhm i8mm bf16\n" \
            "CPU implementer\t: 0x41\nCPU part\t: 0xd40\n"


@pytest.mark.parametrize(("text", "architecture", "cpu_class", "features", "saturates"), [
    (EPYC, "x86_64", "x86 AVX2 without VNNI", ["avx2"], True),
    (SKYLAKE, "x86_64", "x86 AVX-512 without VNNI", ["avx2", "avx512f"], True),
    (ALDER_LAKE, "x86_64", "x86 VNNI", ["avx2", "avx_vnni"], False),
    (SAPPHIRE_RAPIDS, "x86_64", "x86 AMX + VNNI",
     ["amx_bf16", "amx_int8", "avx2", "avx512_bf16", "avx512_vnni", "avx512f", "avx_vnni"], False),
    (GRAVITON3, "aarch64", "aarch64 dotprod", ["asimddp", "bf16", "i8mm"], False),
])
def test_cpu_descriptions_of_both_classes(text, architecture, cpu_class, features, saturates):
    cpu = parse_cpuinfo(text, architecture)
    assert (cpu.cpu_class, sorted(cpu.features), cpu.int8_saturates) == (cpu_class, features, saturates)
    assert cpu_class in cpu.describe() and all(f in cpu.describe() for f in features)
    assert cpu.as_record()["int8_saturates"] is saturates


def test_an_x86_cpu_of_unknown_features_is_treated_as_saturating():
    assert Cpu("x86_64", "x86_64", frozenset(), known=False).int8_saturates


def test_this_cpu_reads_the_kernels_flags():
    """The module's reading of /proc/cpuinfo against the set of every word on its flags lines, read here."""
    cpu = this_cpu()
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    words = {word for line in text.splitlines() if line.lower().startswith(("flags", "features"))
             for word in line.partition(":")[2].split()}
    if cpu.x86 and cpu.known:
        assert cpu.features == frozenset(f for f in X86_FEATURES if f in words)
        assert cpu.int8_saturates == (not words & {"avx512_vnni", "avx_vnni", "amx_int8"})


def emulated_dot(activations: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Σ_k a_k·w_k as a non-VNNI x86 kernel computes it: neighbouring products (2i, 2i+1) added into a saturating
    int16 (`vpmaddubsw`), then summed in int32. activations (P, K) uint8, weights (M, K) int8 → (P, M)."""
    products = activations[:, None, :].astype(np.int32) * weights[None, :, :].astype(np.int32)
    return np.clip(products[..., 0::2] + products[..., 1::2], -32768, 32767).sum(axis=-1)


def brute_force_prone_channels(weights: np.ndarray) -> int:
    """Channels in which some pairing of two weights saturates for some u8 inputs: tried pair by pair with both
    inputs at 255 (the extreme of a₁w₁ + a₂w₂ for same-sign weights)."""
    prone = 0
    for channel in weights:
        prone += any(abs(255 * (int(a) + int(b))) > 32767 and (a > 0) == (b > 0)
                     for a, b in itertools.combinations(channel.tolist(), 2))
    return prone


@pytest.mark.parametrize("levels", [64, 100, 127])
def test_the_overflow_rule_is_exact(rng, levels):
    """worst_pairs > 128 flags exactly the channels where some pairing saturates (brute force); for those, the
    emulated kernel on the adversarial pairing and input differs from the exact sum, and for safe channels no
    pairing of random extreme inputs ever does."""
    weights = rng.integers(-levels, levels + 1, (24, 16)).astype(np.int8)
    weights[0] = 0
    weights[0, :2] = [100, -100]  # opposite signs never overflow: ±255·100 fits
    pairs = worst_pairs(weights, 0)
    assert pairs[0] == 100
    assert int((pairs > INT16_PAIR_LIMIT).sum()) == brute_force_prone_channels(weights)
    for channel, worst in zip(weights, pairs, strict=True):
        if worst > INT16_PAIR_LIMIT:
            sign = 1 if np.sort(np.maximum(channel, 0))[-2:].sum() == worst else -1
            first, second = np.argsort(-sign * channel.astype(np.int16))[:2]
            order = [first, second, *[k for k in range(16) if k not in (first, second)]]
            inputs = np.zeros((1, 16), np.uint8)
            inputs[0, :2] = 255
            assert emulated_dot(inputs, channel[order][None])[0, 0] != int(inputs[0] @ channel[order].astype(int))
        else:
            for _ in range(20):
                order = rng.permutation(16)
                inputs = np.where(rng.random((8, 16)) < 0.7, 255, rng.integers(0, 256, (8, 16))).astype(np.uint8)
                exact = inputs.astype(np.int64) @ channel[order].astype(np.int64)
                np.testing.assert_array_equal(emulated_dot(inputs, channel[order][None])[:, 0], exact)
    assert levels > 64 or not (pairs > INT16_PAIR_LIMIT).any(), "weights in [-64, 64] are never overflow-prone"


def emulated_conv(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """The file's Conv as a non-VNNI x86 kernel computes it: its own Q of x, its INT8 weights, the emulated dot
    product, then the scales."""
    graph = ir.load(path)
    quantize = next(n for n in graph.graph if n.op_type == "QuantizeLinear")
    weight_dq = next(n for n in graph.graph if n.op_type == "DequantizeLinear" and n.inputs[0].producer() is None
                     and n.inputs[0].const_value.dtype == ir.DataType.INT8)
    x_scale = float(quantize.inputs[1].const_value.numpy())
    assert int(quantize.inputs[2].const_value.numpy()) == 0
    q = np.clip(np.rint(x / x_scale), 0, 255).astype(np.uint8)  # (N, C, 1, P)
    w = weight_dq.inputs[0].const_value.numpy().reshape(CHANNELS_OUT, CHANNELS_IN)
    w_scale = weight_dq.inputs[1].const_value.numpy()
    columns = q.transpose(0, 2, 3, 1).reshape(-1, CHANNELS_IN)  # (N·P, C)
    sums = emulated_dot(columns, w).reshape(len(x), PIXELS, CHANNELS_OUT).transpose(0, 2, 1)
    return {"y": (sums * (x_scale * w_scale)[None, :, None]).astype(np.float32)[:, :, None, :]}


def near_the_top(rng: np.random.Generator, count: int) -> np.ndarray:
    """Inputs that quantize to 230..255: the activations that make full-range weights overflow."""
    return rng.uniform(0.9 * AMAX, AMAX, (count, CHANNELS_IN, 1, PIXELS)).astype(np.float32)


def test_full_range_weights_meeting_inputs_near_255_are_flagged_and_fail_the_kernel_check(rng, tmp_path):
    """The static check flags the full-range file and not the safe one; the emulated non-VNNI kernel on inputs near
    255 fails the kernel check on the full-range file and passes it on the safe file (exactly) — whatever CPU runs
    this test, since the kernel is emulated."""
    x = near_the_top(rng, 4)
    results = {}
    for weight_range in WEIGHT_LEVELS:
        path = pointwise_qdq(rng, weight_range, tmp_path)
        emulated = emulated_conv(path, x)
        exact = run_session(reference_session(path), {"x": x})
        assert np.isfinite(emulated["y"]).all() and emulated["y"].shape == exact["y"].shape
        results[weight_range] = (overflow_prone(ir.load(path)), check_kernels(path, {"x": x}, emulated))
    prone, kernels = results["full"]
    assert [p.tensor for p in prone] == ["w_quantized"] and prone[0].worst_pair > INT16_PAIR_LIMIT
    assert not kernels.ok and kernels.metrics.rel_l2 > KERNEL_TOLERANCE.max_rel_l2, kernels.describe()
    prone, kernels = results["safe"]
    assert prone == [] and kernels.ok and kernels.metrics.rel_l2 < 1e-6, kernels.describe()


def test_a_qoperator_file_from_another_tool_is_checked_too(rng, tmp_path):
    """QLinearConv with full-range S8 weights (as ORT's QOperator format writes it) is flagged by name."""
    weights = rng.integers(-127, 128, (CHANNELS_OUT, CHANNELS_IN, 1, 1)).astype(np.int8)
    scalar = {"x_scale": np.float32(0.02), "x_zero": np.uint8(0), "w_scale": np.full(CHANNELS_OUT, 0.01, np.float32),
              "w_zero": np.zeros(CHANNELS_OUT, np.int8), "y_scale": np.float32(0.05), "y_zero": np.uint8(0)}
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zero", "w", "w_scale", "w_zero", "y_scale", "y_zero"],
                            ["y"], name="qconv")
    graph = helper.make_graph([node], "qop", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 16, 1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in {**scalar, "w": weights}.items()])
    prone = overflow_prone(ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])))
    assert [(p.node, p.tensor) for p in prone] == [("qconv", "w")]


def saturating_cpu() -> Cpu:
    return parse_cpuinfo(EPYC, "x86_64")


def test_opening_an_overflow_prone_file_on_a_saturating_cpu_warns_with_the_fix(rng, tmp_path, monkeypatch, cli):
    """Injected AVX2 CPU: the full-range file warns (tensor name, the fix), the safe file does not; injected VNNI
    CPU: neither warns. The CLI shows the warning as one line and still runs."""
    full, safe = (pointwise_qdq(rng, weight_range, tmp_path) for weight_range in ("full", "safe"))
    monkeypatch.setattr(onnxruntime_backend, "this_cpu", saturating_cpu)
    with pytest.warns(Int8OverflowWarning, match=r"w_quantized \(conv\).*--weight-range safe") as caught:
        open_session(full).close()
    assert "AVX2 without VNNI" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Int8OverflowWarning)
        open_session(safe).close()
        monkeypatch.setattr(onnxruntime_backend, "this_cpu", lambda: parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64"))
        with open_session(full) as session:
            assert "x86 AMX + VNNI" in session.device and "CPUExecutionProvider" in session.device
    monkeypatch.setattr(onnxruntime_backend, "this_cpu", saturating_cpu)
    np.save(tmp_path / "x.npy", near_the_top(rng, 1))
    code, _, err = cli("infer", full, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert code == 0, err
    assert "warning:" in err and "w_quantized" in err and "Traceback" not in err
    assert np.load(tmp_path / "y.npy").shape == (1, CHANNELS_OUT, 1, PIXELS)


def test_quantize_writes_full_weights_unless_this_cpu_saturates(bundle_copy, cli):
    """digits_resnet: the default files of both flavours hold 8-bit weights (±127), except on a CPU whose int8 dot
    products saturate, where they hold [-64, 64] (each channel's largest at ±64); `--weight-range safe`
    is never overflow-prone, full-range files are and quantize says so; the manifest records which range each file
    used, with the CPU it was checked on."""
    bundle = bundle_copy("digits_resnet")
    source = bundle / "model.onnx"
    assert cli("quantize", source, "--precision", "int8", "--calib", "digits", "--flavour", "trt")[0] == 0
    calib = bundle / "model.calib.json"
    assert cli("quantize", source, "--precision", "int8", "--calib", calib, "--flavour", "ort")[0] == 0
    code, out, _ = cli("quantize", source, "--precision", "int8", "--calib", calib, "--flavour", "ort",
                       "--weight-range", "safe", "-o", bundle / "model.safe.int8-ort.onnx")
    assert code == 0 and "can overflow the int8 dot products" not in out
    code, out, _ = cli("quantize", source, "--precision", "int8", "--calib", calib, "--flavour", "ort",
                       "--weight-range", "full", "-o", bundle / "model.full.int8-ort.onnx")
    assert code == 0 and ("can overflow the int8 dot products" in out) is this_cpu().int8_saturates, out
    manifest = read_manifest(bundle)
    default = "safe" if this_cpu().int8_saturates else "full"
    for name, weight_range in (("model.int8-trt.onnx", default), ("model.int8-ort.onnx", default),
                               ("model.safe.int8-ort.onnx", "safe"), ("model.full.int8-ort.onnx", "full")):
        record = manifest.artifacts[name]
        graph = ir.load(bundle / name)
        weights = [n.inputs[0].const_value.numpy() for n in graph.graph if n.op_type == "DequantizeLinear"
                   and n.inputs[0].producer() is None and n.inputs[0].const_value.dtype == ir.DataType.INT8]
        assert weights and max(int(np.abs(w).max()) for w in weights) == WEIGHT_LEVELS[weight_range]
        prone = overflow_prone(graph)
        assert record.made_by["weight_range"] == weight_range
        assert record.made_by["overflow_prone_tensors"] == len(prone)
        assert (len(prone) > 0) == (weight_range == "full"), name
        assert record.parity["cpu"] == this_cpu().as_record()


def test_verify_and_the_self_check_run_the_kernel_check(bundle_copy, cli, monkeypatch, rng):
    """The default INT8 file passes verify's kernel check on this CPU (whichever it is). An engine that computes
    something else — ORT's outputs with noise of twice the kernel bound added, as saturating kernels would — fails
    it: verify exits 1 although the file's own Q/DQ math still passes golden parity, and the self-check refuses the
    session."""
    monkeypatch.setattr(choice, "FASTEST", {})  # the engine under test is ONNX Runtime, whatever `auto` picks here
    bundle = bundle_copy("digits_resnet")
    code, out, _ = cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits",
                       "--flavour", "ort")
    assert code == 0, out
    code, out, _ = cli("verify", bundle)
    assert code == 0, out
    line = next(line for line in out.splitlines() if "kernel check" in line)
    assert "kernel check PASS" in line and this_cpu().cpu_class in line
    assert float(line.split("rel-L2 ")[1].split()[0]) <= KERNEL_TOLERANCE.max_rel_l2
    original = onnxruntime_backend.OnnxRuntimeSession._run

    def noisy(self, feeds, output_names):
        """Noise of exactly twice the kernel bound's rel-L2 on every output (its norm fixed, not drawn: the
        self-check runs two golden samples, too few for a drawn norm to stay above the bound)."""
        outputs = original(self, feeds, output_names)
        noisy_outputs = {}
        for name, value in outputs.items():
            noise = rng.standard_normal(value.shape)
            scale = 2 * KERNEL_TOLERANCE.max_rel_l2 * np.linalg.norm(value) / np.linalg.norm(noise)
            noisy_outputs[name] = (value + scale * noise).astype(value.dtype)
        return noisy_outputs

    monkeypatch.setattr(onnxruntime_backend.OnnxRuntimeSession, "_run", noisy)
    code, out, _ = cli("verify", bundle)
    assert code == 1 and "kernel check FAIL" in out
    assert "PASS" in next(line for line in out.splitlines() if line.startswith("model.int8-ort.onnx")), out
    with pytest.raises(SelfCheckFailed, match="do not compute the file's Q/DQ math"):
        open_session(bundle / "model.int8-ort.onnx")


def test_the_default_weight_range_per_cpu_class():
    """full, except on a CPU whose int8 dot products saturate (injected CPUs: an AVX2 EPYC saturates, a Sapphire
    Rapids does not)."""
    from onebyone.optimize.precision.flavours import default_weight_range

    assert default_weight_range(parse_cpuinfo(EPYC, "x86_64").int8_saturates) == "safe"
    assert default_weight_range(parse_cpuinfo(SAPPHIRE_RAPIDS, "x86_64").int8_saturates) == "full"


@pytest.mark.parametrize(("cpuinfo", "advised"), [(EPYC, True), (SAPPHIRE_RAPIDS, False)], ids=["avx2", "vnni"])
def test_overflow_advice_is_printed_only_where_it_applies(cpuinfo, advised, bundle_copy, cli, monkeypatch):
    """A full-range file's overflow advice is for CPUs whose int8 dot products saturate (injected CPU); the manifest
    counts the overflow-prone tensors on every CPU."""
    import onebyone.runtime.core.cpu as cpu_module

    monkeypatch.setattr(cpu_module, "this_cpu", lambda: parse_cpuinfo(cpuinfo, "x86_64"))
    bundle = bundle_copy("digits_resnet")
    code, out, err = cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits",
                         "--flavour", "ort", "--weight-range", "full")
    assert code == 0, err + out
    assert ("can overflow the int8 dot products" in out) is advised
    record = read_manifest(bundle).artifacts["model.int8-ort.onnx"]
    assert record.made_by["overflow_prone_tensors"] > 0
