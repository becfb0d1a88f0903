"""`make bench`, precision part, side by side with ONNX Runtime's own quantizer (`quantize_static`, QDQ, U8
activations, S8 per-channel weights) on the same calibration samples:

1. digits_resnet accuracy on its held-out test split: FP32, FP16, INT8 trt/ort × minmax/percentile/entropy (safe
   weights) and entropy with full weights, and ORT's MinMax/Entropy/Percentile — with whether each ORT method's
   scales differ from its MinMax ones, and every INT8 file's kernel check.
2. ResNet-50 batch 8 on ORT CPU, the INT8 paths: FP32 (`--target ort`), INT8 ort/trt × safe/full weights, ORT
   quantize_static with and without reduce_range — speed × FP32, error vs FP32, kernel check, static check.
3. Calibration peak RSS at 224²: onebyone with 64 and 512 samples, ORT's Entropy calibrator with 16 and 64, each in
   a fresh process.

Writes `bench/precision.json` and `bench/precision.md`.

    python -m bench.precision --build build/bench --out bench
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from rich.console import Console

from onebyone.optimize.precision.calibrate import Calibration
from onebyone.optimize.precision.ranges import METHODS
from onebyone.runtime.bundle.digits import digits_splits
from onebyone.runtime.bundle.golden import reference_session, run_session
from onebyone.runtime.bundle.int8_overflow import overflow_prone
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.preprocess import IMAGENET, load_image
from onebyone.runtime.commands.main import main as onebyone_main
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.core.timing import machine, time_interleaved
from onebyone.runtime.parity.kernel_check import check_kernels
from onebyone.runtime.parity.metrics import measure

stdout = Console(highlight=False)
ORT_METHODS = ("MinMax", "Entropy", "Percentile")
IMAGE_SIDE = 256
X64_PRECISION = "session.x64quantprecision"  # ORT: S8 weights outside [-64, 64] → U8 on u8s8-overflow CPUs


def onebyone(*args: str) -> None:
    if onebyone_main([str(a) for a in args]) != 0:
        raise UserError(f"`onebyone {' '.join(map(str, args))}` failed")


class ArrayReader:
    """ORT's DataSourceReader over model-ready samples, one sample per batch (as ORT's examples do)."""

    def __init__(self, input_name: str, samples: list[np.ndarray] | np.ndarray) -> None:
        self.input_name = input_name
        self.samples = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self.samples, None)
        return None if sample is None else {self.input_name: sample[None].astype(np.float32)}


class ImageReader(ArrayReader):
    """Decodes each image when ORT asks for it, like onebyone's image-folder source."""

    def __init__(self, input_name: str, files: list[Path]) -> None:
        super().__init__(input_name, (load_image(path, IMAGENET) for path in files))


def ort_quantize(source: Path, output: Path, reader: ArrayReader, method: str) -> float:
    """ORT's quantize_static as its docs recommend for CNNs on x86; returns the seconds it took."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    started = time.perf_counter()
    quantize_static(str(source), str(output), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=getattr(CalibrationMethod, method))
    return time.perf_counter() - started


def activation_scales(path: Path) -> dict[str, float]:
    """The scalar scale of every activation QuantizeLinear in a Q/DQ model, by the tensor it quantizes."""
    model = onnx.load(str(path))
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    return {node.input[0]: float(constants[node.input[1]]) for node in model.graph.node
            if node.op_type == "QuantizeLinear" and constants[node.input[1]].size == 1}


def accuracy(path: Path, labelled: LabelledSet, fused: bool) -> float:
    session = deployment_session(path) if fused else reference_session(path)
    name = session.get_inputs()[0].name
    return labelled.accuracy(session.run(None, {name: labelled.inputs})[0])


def kernel_rel_l2(path: Path, labelled: LabelledSet) -> float:
    """The kernel check's rel-L2 on the labelled inputs: ORT's fused kernels vs the file's exact Q/DQ math."""
    feed = {"input": labelled.inputs}
    return check_kernels(path, feed, run_session(deployment_session(path), feed)).metrics.rel_l2


def digits_accuracy(build: Path) -> list[dict]:
    bundle = build / "digits_resnet"
    source = bundle / "model.onnx"
    if not source.is_file():
        onebyone("export", "digits_resnet", "-o", bundle)
    labelled = LabelledSet.load(bundle / "labelled.npz")
    rows = [{"artifact": "FP32", "accuracy": accuracy(source, labelled, False)}]
    onebyone("quantize", source, "--precision", "fp16", "--calib", "digits")
    rows.append({"artifact": "onebyone FP16", "accuracy": accuracy(bundle / "model.fp16.onnx", labelled, False)})
    for flavour in ("trt", "ort"):
        for method, weight_range in [*((m, "safe") for m in METHODS), ("entropy", "full")]:
            output = bundle / f"model.{method}.{weight_range}.int8-{flavour}.onnx"
            started = time.perf_counter()
            onebyone("quantize", source, "--precision", "int8", "--calib", "digits", "--method", method,
                     "--flavour", flavour, "--weight-range", weight_range, "-o", output)
            rows.append({"artifact": f"onebyone INT8 {flavour} {method}, {weight_range} weights",
                         "seconds": time.perf_counter() - started,
                         "accuracy": accuracy(output, labelled, flavour == "ort"),
                         "kernel_rel_l2": kernel_rel_l2(output, labelled)})
    calib = digits_splits()["calib"].images
    minmax_scales = None
    for method in ORT_METHODS:
        output = bundle / f"model.ort-quantize-static-{method.lower()}.onnx"
        seconds = ort_quantize(source, output, ArrayReader("input", calib), method)
        scales = activation_scales(output)
        minmax_scales = minmax_scales or scales
        rows.append({"artifact": f"ORT quantize_static {method}", "seconds": seconds,
                     "accuracy": accuracy(output, labelled, True), "kernel_rel_l2": kernel_rel_l2(output, labelled),
                     "scales_differ_from_minmax": sum(scales[k] != minmax_scales.get(k) for k in scales)})
    fp32 = rows[0]["accuracy"]
    for row in rows:
        row["drop_points"] = 100 * (fp32 - row["accuracy"])
    return rows


def entropy_clipping(calib_json: Path) -> dict[str, int]:
    """How many tensors onebyone's entropy ranges clip below their max |x|."""
    calibration = Calibration.load(calib_json)
    entropy, minmax = calibration.ranges("entropy", 100.0), calibration.ranges("minmax", 100.0)
    return {"tensors": len(entropy), "clipped_below_max": sum(entropy[k] < minmax[k] for k in entropy)}


def calibration_images(folder: Path, count: int) -> list[Path]:
    """`count` PNGs at 256×256 RGB made from sklearn's digits (upscaled), so ImageNet preprocessing applies."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images = digits_splits()["train"].images
    paths = []
    for index in range(count):
        path = folder / f"{index:04d}.png"
        if not path.is_file():
            gray = ((images[index % len(images), 0] * 0.5 + 0.5) * 255).astype(np.uint8)
            Image.fromarray(gray, mode="L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BILINEAR) \
                .convert("RGB").save(path)
        paths.append(path)
    return paths


def ort_quantize_reduce_range(source: Path, output: Path, reader: ArrayReader) -> None:
    """ORT's quantize_static with `reduce_range=True` (7-bit weights), which ORT documents for CPUs without VNNI."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(source), str(output), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


def resnet50_int8_paths(build: Path, images: Path, seconds: float) -> list[dict]:
    """ResNet-50 batch 8 on ONNX Runtime CPU: FP32 and every INT8 path (onebyone ort/trt × safe/full weights, ORT's
    quantize_static with and without reduce_range), each with its speed × FP32, its output error vs FP32, the
    kernel check (fused kernels vs the file's exact Q/DQ math) and the static check (overflow-prone tensors)."""
    bundle = build / "resnet50"
    source = bundle / "model.onnx"
    if not source.is_file():
        onebyone("export", "resnet50", "-o", bundle)
    calib = bundle / "model.calib.json"
    fp32 = bundle / "model.target-ort.onnx"
    onebyone("optimize", source, "-o", fp32, "--target", "ort")
    onebyone("quantize", source, "--precision", "int8", "--calib", images, "--calib-samples", "32",
              "--flavour", "ort", "-o", bundle / "model.int8-ort.onnx")
    candidates = {"FP32 --target ort": fp32,
                  "onebyone INT8 ort (safe weights, default)": bundle / "model.int8-ort.onnx"}
    for flavour, weight_range in (("ort", "full"), ("trt", "safe"), ("trt", "full")):
        output = bundle / f"model.int8-{flavour}{'' if weight_range == 'safe' else '-full'}.onnx"
        onebyone("quantize", source, "--precision", "int8", "--calib", calib, "--flavour", flavour,
                  "--weight-range", weight_range, "-o", output)
        default = " default" if weight_range == "safe" else ""
        candidates[f"onebyone INT8 {flavour} ({weight_range} weights{default})"] = output
    files = sorted(images.glob("*.png"))[:32]
    ort_int8 = bundle / "model.ort-quantize-static.onnx"
    ort_quantize(source, ort_int8, ImageReader("input", files), "MinMax")
    candidates["ORT quantize_static U8S8 MinMax"] = ort_int8
    reduced = bundle / "model.ort-quantize-static-reduce-range.onnx"
    ort_quantize_reduce_range(source, reduced, ImageReader("input", files))
    candidates["ORT quantize_static U8S8 MinMax reduce_range"] = reduced
    precise = "onebyone INT8 ort (full weights), ORT session.x64quantprecision=1"
    candidates[precise] = candidates["onebyone INT8 ort (full weights)"]
    sessions = {label: deployment_session(path, {X64_PRECISION: "1"} if label == precise else {})
                for label, path in candidates.items()}
    batch = 8
    feed = {"input": np.stack([load_image(path, IMAGENET) for path in files[:batch]])}
    reference = run_session(sessions["FP32 --target ort"], feed)
    timings = time_interleaved({label: (lambda s=s: s.run(None, feed)) for label, s in sessions.items()}, batch,
                               rounds=max(5, int(seconds)), label="resnet50 precision")
    baseline = timings["FP32 --target ort"]
    rows = []
    for label, session in sessions.items():
        output = run_session(session, feed)
        vs_fp32 = measure(reference, output, None)
        row = {"artifact": label, **timings[label].as_record(), "vs_fp32": timings[label].speedup_over(baseline),
               "top1_agreement_vs_fp32": vs_fp32.top1_agreement, "rel_l2_vs_fp32": vs_fp32.rel_l2}
        if label != "FP32 --target ort":
            row["kernel_rel_l2"] = check_kernels(candidates[label], feed, output).metrics.rel_l2
            row["overflow_prone_tensors"] = len(overflow_prone(ir.load(candidates[label])))
        rows.append(row)
    return rows


def deployment_session(path: Path, config: dict[str, str] | None = None) -> ort.InferenceSession:
    return ort_session(path, "all", config=config)


def calibration_memory(build: Path, images: Path) -> list[dict]:
    source = build / "resnet50" / "model.onnx"
    runs = [("onebyone (streaming, entropy)", "onebyone", 64), ("onebyone (streaming, entropy)", "onebyone", 512),
            ("ORT Entropy calibrator", "ort-entropy", 16), ("ORT Entropy calibrator", "ort-entropy", 64)]
    rows = []
    for label, impl, samples in runs:
        command = [sys.executable, "-m", "bench.precision", "--worker", impl, "--model", str(source),
                   "--images", str(images), "--samples", str(samples)]
        stdout.print(f"calibration memory: {label}, {samples} samples")
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise UserError(f"calibration worker failed: {result.stderr.strip()[-2000:]}")
        rows.append({"calibrator": label, "samples": samples, **json.loads(result.stdout.strip().splitlines()[-1])})
    for row in rows:
        first = next(r for r in rows if r["calibrator"] == row["calibrator"])
        row["rss_vs_fewest_samples"] = row["peak_rss_mb"] / first["peak_rss_mb"]
    return rows


def worker(impl: str, model: Path, images: Path, samples: int) -> None:
    """One calibration in this process; prints {"peak_rss_mb", "seconds"} as the last line."""
    files = sorted(images.glob("*.png"))[:samples]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        if impl == "onebyone":
            onebyone("quantize", model, "--precision", "int8", "--calib", images, "--calib-samples", samples,
                     "--method", "entropy", "--flavour", "ort", "-o", Path(scratch) / "model.int8-ort.onnx")
        else:
            from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

            calibrator = create_calibrator(str(model), augmented_model_path=str(Path(scratch) / "augmented.onnx"),
                                           calibrate_method=CalibrationMethod.Entropy)
            calibrator.collect_data(ImageReader("input", files))
            calibrator.compute_data()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_rss_mb": peak_mb, "seconds": time.perf_counter() - started}))


def markdown(record: dict) -> str:
    cpu = record["machine"]["processor"]
    lines = ["## Precision (`bench/precision.py`)", "", f"CPU: {cpu}.", "",
             "### digits_resnet, held-out test split (360 images), calibration split (180 images)", "",
             "INT8 `ort` files and ORT's run on ORT's fused kernels, `trt` files as written; the kernel check is the "
             "rel-L2 of ORT's fused kernels from the file's exact Q/DQ math on the 360 test images (bound 0.03).", "",
             "| artifact | top-1 | drop (pt) | kernel check rel-L2 | seconds | ORT scales ≠ its MinMax |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['artifact']} | {r['accuracy']:.2%} | {r['drop_points']:.2f} | "
              f"{format(r['kernel_rel_l2'], '.2e') if 'kernel_rel_l2' in r else '—'} | {r.get('seconds', 0):.1f} | "
              f"{r.get('scales_differ_from_minmax', '')} |" for r in record["digits"]]
    clipping = record["digits_entropy"]
    lines += ["", f"onebyone's entropy ranges clip {clipping['clipped_below_max']} of {clipping['tensors']} tensors "
                  "below their max |x|."]
    lines += ["", f"### ResNet-50 (random weights), batch 8, ONNX Runtime CPU (ORT_ENABLE_ALL), {cpu}", "",
              "Kernel check: rel-L2 of the fused kernels' outputs from the same file's exact Q/DQ math (bound 0.03). "
              "Overflow-prone: weight tensors that can saturate a non-VNNI x86 int8 dot product (static check).", "",
              "| artifact | median ms | samples/s | × FP32 | rel-L2 vs FP32 | top-1 agreement with FP32 | kernel check "
              "rel-L2 | overflow-prone tensors |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['artifact']} | {r['median_ms']:.1f} | {r['throughput']:.1f} | {r['vs_fp32']:.2f} | "
              f"{r['rel_l2_vs_fp32']:.2e} | {r['top1_agreement_vs_fp32']:.0%} | "
              f"{format(r['kernel_rel_l2'], '.2e') if 'kernel_rel_l2' in r else '—'} | "
              f"{r.get('overflow_prone_tensors', '—')} |" for r in record["resnet50_b8"]]
    lines += ["", "### Calibration peak memory, ResNet-50 at 224² (fresh process each)", "",
              "| calibrator | samples | peak RSS MB | × its fewest-samples run | seconds |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['calibrator']} | {r['samples']} | {r['peak_rss_mb']:.0f} | {r['rss_vs_fewest_samples']:.2f} | "
              f"{r['seconds']:.0f} |" for r in record["calibration_memory"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.precision",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--seconds", type=float, default=20.0, help="timing rounds for the throughput comparison")
    parser.add_argument("--worker", choices=("onebyone", "ort-entropy"), help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model, args.images, args.samples)
        return 0
    images = args.build / "calib-images"
    calibration_images(images, 512)
    record = {"machine": machine(), "onnxruntime": ort.__version__, "digits": digits_accuracy(args.build),
              "digits_entropy": entropy_clipping(args.build / "digits_resnet" / "model.calib.json"),
              "resnet50_b8": resnet50_int8_paths(args.build, images, args.seconds),
              "calibration_memory": calibration_memory(args.build, images)}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "precision.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    with atomic_write(args.out / "precision.md") as tmp:
        tmp.write_text(markdown(record))
    stdout.print(markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
