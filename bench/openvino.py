"""`make bench`, OpenVINO part: the same artifacts on OpenVINO beside ONNX Runtime and torch, in one run, through
`onebyone.open` (so the sessions measured are the ones users get, self-checks included).

For ResNet-50 (random weights, INT8 calibrated on 32 digit images at 224²) and digits_resnet (its calibration split),
batch 1 and 8, rounds interleaved: torch eager, ORT FP32 (the `--target ort` file, the baseline of every ×), OpenVINO
FP32 with the f32 hint, OpenVINO BF16 (where the CPU has AVX512-BF16/AMX), and the INT8 `trt` and `ort` files on
ONNX Runtime and on OpenVINO — each row with its error against ORT FP32 and, for INT8, the kernel check against the
file's exact Q/DQ math; the `trt` file with FP32 float parts (`--float-dtype fp32`, the CPU form) on OpenVINO too.
ResNet-50 also gets OpenVINO FP32 compiled for each batch size (static shapes) beside the session's one
dynamic-batch compile. The `auto` section records, per artifact kind, whether OpenVINO beat ONNX
Runtime on the same file at ResNet-50 batch 8 with a passing kernel check: runtime/sessions/choice.py's table for
this CPU class is that section (tests/test_openvino.py holds them together).

Writes `bench/openvino-<cpu class>.json` and `.md`: one pair per CPU class, so a run on another class of machine adds
its own instead of overwriting this one's.

    python -m bench.openvino --build build/bench --out bench
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

import onebyone
from bench.precision import calibration_images
from bench.precision import onebyone as run_onebyone
from bench.report import part_arguments
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import read_manifest
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.timing import machine, time_interleaved
from onebyone.runtime.parity.kernel_check import check_kernels, fresh_inputs
from onebyone.runtime.parity.metrics import measure
from onebyone.runtime.sessions.openvino_backend import bf16_refusal, import_openvino

stdout = Console(highlight=False)
MODELS = ("resnet50", "digits_resnet")
BATCHES = (1, 8)
BASELINE = "ORT FP32 --target ort"
AUTO_KINDS = {"fp32": ("ORT FP32 --target ort", "OpenVINO FP32 (f32 hint)"),
              "int8-trt": ("ORT INT8 trt", "OpenVINO INT8 trt"), "int8-ort": ("ORT INT8 ort", "OpenVINO INT8 ort")}
AUTO_MARGIN = 1.05  # OpenVINO must beat ONNX Runtime by 5% to be picked: a tie stays on the default engine


def artifacts(build: Path, name: str) -> dict[str, Path]:
    """The bundle's files this part measures, made where missing (an INT8 or bf16 file is made once per bundle)."""
    bundle = build / name
    if not (bundle / "model.onnx").is_file():
        run_onebyone("export", name, "-o", bundle)
    source = bundle / "model.onnx"
    calib = ["digits"] if name == "digits_resnet" else [str(build / "calibration-images"), "--calib-samples", "32"]
    if name != "digits_resnet":
        calibration_images(build / "calibration-images", 32)
    recorded = read_manifest(bundle).artifacts
    files = {"fp32": source, "target-ort": bundle / "model.target-ort.onnx",
             "int8-trt": bundle / "model.int8-trt.onnx", "int8-ort": bundle / "model.int8-ort.onnx"}
    if files["target-ort"].name not in recorded:
        run_onebyone("optimize", source, "-o", files["target-ort"], "--target", "ort")
    if files["int8-trt"].name not in recorded:
        run_onebyone("quantize", source, "--precision", "int8", "--calib", *calib, "--flavour", "trt",
                     "-o", files["int8-trt"])
    files["int8-trt-fp32"] = bundle / "model.int8-trt-fp32.onnx"
    if files["int8-trt-fp32"].name not in recorded:
        run_onebyone("quantize", source, "--precision", "int8", "--calib", bundle / "model.calib.json",
                     "--float-dtype", "fp32", "-o", files["int8-trt-fp32"])
    if files["int8-ort"].name not in recorded:
        run_onebyone("quantize", source, "--precision", "int8", "--calib", bundle / "model.calib.json",
                     "--flavour", "ort", "-o", files["int8-ort"])
    if bf16_refusal(this_cpu()) is None:
        files["bf16"] = bundle / "model.bf16.onnx"
        if files["bf16"].name not in read_manifest(bundle).artifacts:
            run_onebyone("quantize", source, "--precision", "bf16")
    return files


def static_runner(path: Path, inputs: np.ndarray) -> Any:
    """OpenVINO FP32 compiled for exactly this batch: the alternative to the session's one dynamic-batch compile."""
    openvino = import_openvino()
    core = openvino.Core()
    model = core.read_model(str(path))
    model.reshape({model.inputs[0].get_any_name(): list(inputs.shape)})
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                                 "NUM_STREAMS": 1})
    request = compiled.create_infer_request()
    return lambda: request.infer({0: inputs})


def measure_model(build: Path, name: str, rounds: int) -> dict[str, Any]:
    files = artifacts(build, name)
    bundle = files["fp32"].parent
    sessions = {"torch eager": onebyone.open(bundle, "torch"),
                BASELINE: onebyone.open(files["target-ort"], "onnxruntime"),
                "OpenVINO FP32 (f32 hint)": onebyone.open(files["fp32"], "openvino")}
    if "bf16" in files:
        sessions["OpenVINO BF16"] = onebyone.open(files["bf16"], "openvino")
    for flavour in ("trt", "ort"):
        for engine, label in (("onnxruntime", "ORT"), ("openvino", "OpenVINO")):
            sessions[f"{label} INT8 {flavour}"] = onebyone.open(files[f"int8-{flavour}"], engine)
    sessions["OpenVINO INT8 trt, FP32 float parts"] = onebyone.open(files["int8-trt-fp32"], "openvino")
    int8 = {label: session.target.path for label, session in sessions.items() if "INT8" in label}
    rng = np.random.default_rng(0)
    golden = Golden.load(bundle / "golden.npz").inputs
    rows = []
    for batch in BATCHES:
        x = (fresh_inputs(golden, batch, rng) if name == "digits_resnet"
             else {"input": rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)})
        runners = {label: (lambda s=session, x=x: s.run(x)) for label, session in sessions.items()}
        if name != "digits_resnet":
            runners["OpenVINO FP32, compiled for this batch"] = static_runner(files["fp32"], x["input"])
        timings = time_interleaved(runners, batch, rounds, label=name)
        reference = sessions[BASELINE].run(x)
        for label, timing in timings.items():
            row: dict[str, Any] = {"model": name, "batch": batch, "artifact": label,
                                   "speedup": timing.speedup_over(timings[BASELINE]), **timing.as_record()}
            if label in sessions:
                outputs = sessions[label].run(x)
                row["device"] = sessions[label].device
                row["rel_l2_vs_ort_fp32"] = measure(reference, outputs).rel_l2
                if label in int8:
                    kernels = check_kernels(int8[label], x, outputs)
                    row["kernel"] = {"ok": kernels.ok, "rel_l2": kernels.metrics.rel_l2}
            rows.append(row)
    for session in sessions.values():
        session.close()
    return {"rows": rows}


def auto_section(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per kind, OpenVINO against ONNX Runtime on the same file, ResNet-50 batch 8; `openvino_faster`: by at least
    AUTO_MARGIN (the ratios of one kind moved by a few percent between runs on one machine)."""
    at = {r["artifact"]: r for r in rows if r["model"] == "resnet50" and r["batch"] == 8}
    section = {}
    for kind, (ort_label, ov_label) in AUTO_KINDS.items():
        ratio = at[ov_label]["throughput"] / at[ort_label]["throughput"]
        kernel_ok = at[ov_label].get("kernel", {"ok": at[ov_label]["rel_l2_vs_ort_fp32"] <= 1e-4})["ok"]
        section[kind] = {"openvino_over_onnxruntime": ratio, "openvino_faster": ratio >= AUTO_MARGIN,
                         "margin": AUTO_MARGIN, "kernel_ok": kernel_ok}
    return section


def markdown(record: dict[str, Any]) -> str:
    cpu = record["machine"]["processor"]
    lines = [f"## OpenVINO beside ONNX Runtime and torch ({record['machine']['cpu']['class']})", "",
             f"CPU: {cpu}, {record['machine']['cpus']} CPUs; OpenVINO {record['openvino']}. × is throughput over "
             f"{BASELINE} at the same batch, the median of per-round ratios (rounds interleaved). Error: rel-L2 "
             "against ORT FP32 on the same inputs; kernel: rel-L2 against the INT8 file's exact Q/DQ math (bound "
             "0.05).", "",
             "| model | batch | artifact | median ms | samples/s | × ORT FP32 | rel-L2 vs ORT FP32 | kernel |",
             "|---|---:|---|---:|---:|---:|---:|---|"]
    for row in record["rows"]:
        kernel = row.get("kernel")
        kernel_text = f"{'PASS' if kernel['ok'] else 'FAIL'} {kernel['rel_l2']:.1e}" if kernel else ""
        error = f"{row['rel_l2_vs_ort_fp32']:.1e}" if "rel_l2_vs_ort_fp32" in row else ""
        lines.append(f"| {row['model']} | {row['batch']} | {row['artifact']} | {row['median_ms']:.2f} | "
                     f"{row['throughput']:.1f} | {row['speedup']:.2f}× | {error} | {kernel_text} |")
    lines += ["", "`auto` on this CPU class (ResNet-50 batch 8, OpenVINO ÷ ONNX Runtime on the same file; OpenVINO "
              f"is picked from {AUTO_MARGIN:.2f}× with a passing kernel check):", "",
              "| kind | OpenVINO ÷ ORT | kernel check | auto picks |", "|---|---:|---|---|"]
    for kind, row in record["auto"].items():
        picks = "openvino" if row["openvino_faster"] and row["kernel_ok"] else "onnxruntime"
        lines.append(f"| {kind} | {row['openvino_over_onnxruntime']:.2f}× | "
                     f"{'PASS' if row['kernel_ok'] else 'FAIL'} | {picks} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = part_arguments(__doc__)
    parser.add_argument("--rounds", type=int, default=12, help="timed rounds per batch size (default 12)")
    args = parser.parse_args(argv)
    openvino = import_openvino()
    rows = []
    for name in MODELS:
        rows += measure_model(args.build, name, args.rounds)["rows"]
    record = {"machine": machine(), "openvino": openvino.get_version(), "rows": rows, "auto": auto_section(rows)}
    slug = re.sub(r"[^a-z0-9]+", "-", this_cpu().cpu_class.lower()).strip("-")
    for suffix, text in ((".json", json.dumps(record, indent=2) + "\n"), (".md", markdown(record))):
        with atomic_write(args.out / f"openvino-{slug}{suffix}") as tmp:
            tmp.write_text(text)
    stdout.print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
