"""`onebyone quantize IN.onnx -o OUT.onnx --precision fp16|int8|bf16`: precision written into the ONNX (bf16: into its
metadata, as OpenVINO's BF16 inference hint on the FP32 graph)."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from onebyone.optimize.precision.flavours import (
    DEFAULT_FLOAT_DTYPE,
    FLAVOURS,
    FLOAT_DTYPES,
    WEIGHT_LEVELS,
    default_weight_range,
)
from onebyone.optimize.precision.ranges import DEFAULT_METHOD, METHODS
from onebyone.optimize.precision.trt_cache import DEFAULT_TRT_VERSION, write_cache
from onebyone.runtime.bundle.preprocess import Preprocess
from onebyone.runtime.bundle.sources import SOURCES_HELP, DataSource, open_source
from onebyone.runtime.commands.arguments import positive_int
from onebyone.runtime.commands.verify import engines_pass
from onebyone.runtime.core import cpu
from onebyone.runtime.core.errors import CheckFailed, UserError
from onebyone.runtime.core.files import sha256_file, staging_dir

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import onnx_ir as ir

    from onebyone.optimize.artifact import Companion
    from onebyone.optimize.precision.calibrate import Calibration
    from onebyone.optimize.precision.qdq import TensorRange

stdout = Console(highlight=False, soft_wrap=True)
PRECISIONS = ("fp16", "int8", "bf16")
FALLBACK_SAMPLES = 256  # the accuracy fallback evaluates every candidate on at most this many calibration samples


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Write precision into the ONNX: FP16 types, or INT8 Q/DQ from streamed calibration "
                          "(TensorRT or ONNX Runtime flavour).")
    parser.add_argument("input", type=Path, help="FP32 ONNX file (in a bundle, the manifest is updated)")
    parser.add_argument("-o", "--output", type=Path, help="output ONNX (default INPUT.fp16.onnx / INPUT.int8-FLAVOUR"
                                                          ".onnx)")
    parser.add_argument("--precision", required=True, choices=PRECISIONS,
                        help="fp16: FP16 tensors; int8: calibrated Q/DQ; bf16: the FP32 graph run with OpenVINO's BF16 "
                             "inference hint (CPUs with AVX512-BF16 or AMX; needs onebyone[openvino])")
    parser.add_argument("--calib", help=f"calibration data: {SOURCES_HELP}; plain `digits` is digits-calibration; or "
                                        "a calib.json made for this model (required for int8; for fp16 it keeps "
                                        "out-of-range layers FP32)")
    parser.add_argument("--calib-samples", type=positive_int, help="use at most N samples (default: all; random: 64)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="calibration batch size (default 8)")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help=f"INT8 range method (default {DEFAULT_METHOD}: the best or tied best on pretrained "
                             "EfficientNet-Lite0/1, docs/precision.md)")
    parser.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (default 99.99)")
    parser.add_argument("--flavour", choices=FLAVOURS, default="trt",
                        help="trt: symmetric INT8 for TensorRT (default); ort: U8 activations, fast in ONNX Runtime")
    parser.add_argument("--weight-range", choices=tuple(WEIGHT_LEVELS),
                        help="int8 weights: full = [-127, 127]; safe = [-64, 64], right on every CPU (non-VNNI x86 "
                             "int8 kernels saturate 8-bit weights). Default: full, except safe on a CPU without VNNI "
                             "(docs/precision.md: full keeps 1-1.5 points of ImageNet top-1)")
    parser.add_argument("--float-dtype", choices=FLOAT_DTYPES,
                        help="int8: the type of everything outside Q/DQ (Relu, pooling, float layers, scales); casts "
                             "only at the graph inputs/outputs. Default: fp16 for --flavour trt (TensorRT 11 runs "
                             "a strongly typed network in the ONNX's types), fp32 for ort (ONNX Runtime's CPU "
                             "kernels fuse FP32 Q/DQ only)")
    parser.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=True,
                        help="int8: take each layer's mean weight-rounding error, measured on the calibration data, "
                             "out of its bias (default on; docs/precision.md)")
    parser.add_argument("--exclude", default="", help="comma-separated node names to leave unquantized (int8)")
    parser.add_argument("--keep-fp32", default="", help="comma-separated node names to keep in FP32")
    parser.add_argument("--fp16-io", action="store_true",
                        help="fp16, and int8 with fp16 float parts: FP16 graph inputs/outputs (default FP32)")
    fallback = parser.add_mutually_exclusive_group()
    fallback.add_argument("--accuracy-budget", type=float, metavar="PT",
                          help="int8: keep the fewest most quantization-sensitive layers in float for which the "
                               "share of calibration samples whose top-1 changes against the float model (an upper "
                               "bound on the accuracy drop) is at most PT points")
    fallback.add_argument("--auto-exclude", type=positive_int, metavar="K",
                          help="int8: keep the K most quantization-sensitive layers in float")
    parser.add_argument("--sensitivity", action="store_true",
                        help="int8: rank every weighted layer by the output error it causes when quantized alone "
                             "(printed and recorded in the manifest)")
    parser.add_argument("--trt-version", default=installed_tensorrt() or DEFAULT_TRT_VERSION,
                        help="TensorRT version named in the legacy calibration cache (default: the installed one, "
                             f"else {DEFAULT_TRT_VERSION})")
    parser.set_defaults(run=run)


def installed_tensorrt() -> str | None:
    try:
        return version("tensorrt")
    except PackageNotFoundError:
        return None


def default_output(source: Path, precision: str, flavour: str) -> Path:
    suffix = precision if precision in ("fp16", "bf16") else f"int8-{flavour}"
    return source.with_name(f"{source.name.removesuffix('.onnx')}.{suffix}.onnx")


def node_names(text: str, model: ir.Model) -> set[str]:
    names = {name.strip() for name in text.split(",") if name.strip()}
    unknown = sorted(names - {node.name for node in model.graph})
    if unknown:
        examples = ", ".join(n.name for n in model.graph if n.op_type == "Conv")[:200]
        raise UserError(f"no node named {', '.join(unknown)} in the model; Conv nodes are named like: {examples}")
    return names


def run(args: argparse.Namespace) -> int:
    from onebyone.optimize.artifact import write_artifact
    from onebyone.runtime.bundle.onnx_file import load_model, with_types
    from onebyone.runtime.bundle.tolerances import TOLERANCES

    if args.precision == "int8" and not args.calib:
        raise UserError("--precision int8 needs calibration data: --calib DATA (" + SOURCES_HELP + ")")
    if not 0 < args.percentile <= 100:
        raise UserError(f"--percentile must be in (0, 100], got {args.percentile}")
    if _wants_sensitivity(args) and (args.precision != "int8" or Path(args.calib).suffix == ".json"):
        raise UserError("--sensitivity/--accuracy-budget/--auto-exclude apply to --precision int8 with calibration "
                        "data (--calib DATA, not a calib.json): they measure errors on that data")
    if args.accuracy_budget is not None and args.accuracy_budget < 0:
        raise UserError(f"--accuracy-budget {args.accuracy_budget} is negative")
    _check_float_dtype(args)
    if args.precision == "bf16":
        return _to_bf16(args)
    model = with_types(load_model(args.input))
    output = args.output or default_output(args.input, args.precision, args.flavour)
    exclude, keep = node_names(args.exclude, model), node_names(args.keep_fp32, model)
    if args.precision == "int8" and any(node.domain == "com.microsoft" for node in model.graph):
        raise UserError(f"{args.input} holds ONNX Runtime contrib ops (from `optimize --target ort`), which cannot "
                        "be quantized; quantize an export or an `optimize --target trt` (or generic) output")
    with staging_dir(output.parent) as stage:
        calibration, calib_file, companions, data = _calibration(args, model, output, stage)
        if args.precision == "fp16":
            made_by = _to_fp16(model, calibration, keep, args.fp16_io)
        else:
            made_by = _to_int8(model, calibration, args, exclude, keep, data)
        made_by = {"stage": "quantize", "from": args.input.name, "precision": args.precision} | made_by
        if calibration is not None:
            made_by["calibration"] = {"source": calibration.source, "samples": calibration.samples,
                                      "file": calib_file.name}
        line = write_artifact(model, args.input, output, args.precision, TOLERANCES[args.precision], made_by,
                              companions)
    stdout.print(line)
    if args.precision == "int8" and in_bundle(output):
        engines_pass(output.parent, output.name)  # recorded for `auto`; verify fails on a bad default engine
    return 0


def in_bundle(path: Path) -> bool:
    from onebyone.runtime.bundle.manifest import manifest_path, read_manifest

    return manifest_path(path.parent).is_file() and path.name in read_manifest(path.parent).artifacts


def _to_bf16(args: argparse.Namespace) -> int:
    """The FP32 graph with `onebyone.precision = bf16` in its metadata: OpenVINO compiles it with its BF16 inference
    hint (runtime/sessions/openvino_backend.py). Refused where the CPU has no BF16 instructions; checked on OpenVINO
    against the golden torch outputs with the bf16 row of the tolerance table."""
    from onebyone.optimize.artifact import write_artifact
    from onebyone.runtime.bundle.onnx_file import graph_precision, load_model
    from onebyone.runtime.bundle.tolerances import TOLERANCES
    from onebyone.runtime.parity.check import Engine
    from onebyone.runtime.sessions.locate import PRECISION_KEY, Target
    from onebyone.runtime.sessions.openvino_backend import OpenVinoSession, bf16_refusal, import_openvino

    import_openvino()
    if (refusal := bf16_refusal(cpu.this_cpu())) is not None:
        raise UserError(refusal)
    if args.calib or args.exclude or args.keep_fp32 or args.fp16_io:
        raise UserError("--precision bf16 takes no --calib/--exclude/--keep-fp32/--fp16-io: BF16 is OpenVINO's "
                        "setting for the whole FP32 graph")
    model = load_model(args.input)
    if (found := graph_precision(model)) != "fp32":
        raise UserError(f"{args.input} is {found}; --precision bf16 takes an FP32 model (an export or optimize output)")
    model.metadata_props[PRECISION_KEY] = "bf16"

    def open_openvino(path: Path) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        session = OpenVinoSession(Target("onnx", path, None, None, None, None, None))
        return session.run_batched

    output = args.output or default_output(args.input, "bf16", args.flavour)
    made_by = {"stage": "quantize", "from": args.input.name, "precision": "bf16", "engine": "openvino",
               "inference_precision_hint": "bf16"}
    stdout.print(write_artifact(model, args.input, output, "bf16", TOLERANCES["bf16"], made_by,
                                engine=Engine("OpenVINO bf16", open_openvino)))
    return 0


def _check_float_dtype(args: argparse.Namespace) -> None:
    """Settle args.float_dtype for int8 (the flavour's default when not given) and refuse what cannot help."""
    if args.precision != "int8":
        if args.float_dtype is not None:
            raise UserError("--float-dtype applies to --precision int8 (an fp16 file is FP16 throughout)")
        return
    args.float_dtype = args.float_dtype or DEFAULT_FLOAT_DTYPE[args.flavour]
    args.weight_range = args.weight_range or default_weight_range(cpu.this_cpu().int8_saturates)
    if args.flavour == "ort" and args.float_dtype == "fp16":
        raise UserError("--flavour ort --float-dtype fp16: ONNX Runtime's CPU kernels fuse only FP32 Q/DQ, so the "
                        "ort file would run unfused; use --float-dtype fp32, or --flavour trt for FP16 float parts")
    if args.fp16_io and args.float_dtype != "fp16":
        raise UserError("--fp16-io needs FP16 float parts: --float-dtype fp16 (--flavour trt)")


def _calib_path(source: Path, output: Path) -> Path:
    return output.parent / f"{source.name.removesuffix('.onnx')}.calib.json"


def _calibration(args: argparse.Namespace, model: ir.Model, output: Path,
                 stage: Path) -> tuple[Calibration | None, Path | None, list[Companion], DataSource | None]:
    """The calibration to use, the calib.json it lives in, the files to publish with the output (calib.json and the
    TensorRT cache, when this run calibrated), and the data it was calibrated on (None for a calib.json)."""
    from onebyone.optimize.artifact import Companion
    from onebyone.optimize.precision.calibrate import Calibration, collect

    if not args.calib:
        return None, None, [], None
    model_sha256 = sha256_file(args.input)
    calib_file = Path(args.calib)
    if calib_file.suffix == ".json" and calib_file.is_file():
        calibration = Calibration.load(calib_file)
        if calibration.model_sha256 != model_sha256:
            raise UserError(f"{calib_file} was made for another model (sha256 {calibration.model_sha256[:12]}…, "
                            f"{args.input.name} is {model_sha256[:12]}…); calibrate this one with --calib DATA")
        stdout.print(f"calibration: {calib_file} ({calibration.samples} samples of {calibration.source})")
        return calibration, calib_file, [], None
    graph_input = model.graph.inputs[0]
    sample_shape = tuple(d if isinstance(d, int) else None for d in graph_input.shape[1:])
    preprocess = model.metadata_props.get("onebyone.preprocess")
    data = open_source(args.calib, sample_shape, Preprocess.from_dict(json.loads(preprocess)) if preprocess else None,
                       args.calib_samples, graph_input.name)
    if data.smoke_only:
        stdout.print(f"[bold yellow]warning:[/] calibrating on {data.description}")
    kept = _calib_path(args.input, output)
    if (reused := _same_calibration(kept, model_sha256, data)) is not None:
        stdout.print(f"calibration: {kept} (its {reused.samples} samples of {reused.source}: this model, this data)")
        return reused, kept, [], data
    calibration = collect(model, model_sha256, data, args.batch_size)
    stdout.print(f"calibration: {calibration.samples} samples of {calibration.source}, "
                 f"{len(calibration.statistics)} tensors")
    calib_json = stage / _calib_path(args.input, output).name
    calibration.save(calib_json, args.method, args.percentile)
    ranges = calibration.ranges(args.method, args.percentile)
    cache = calib_json.with_name(calib_json.name.removesuffix(".json") + ".cache")
    write_cache(cache, ranges, args.trt_version)
    companions = [Companion(calib_json, "calibration"), Companion(cache, "tensorrt-calibration-cache")]
    return calibration, _calib_path(args.input, output), companions, data


def _same_calibration(path: Path, model_sha256: str, data: DataSource) -> Calibration | None:
    """The calibration already beside the output when it was made for this model on this data (same source, same
    number of samples): statistics do not depend on the flavour or method, so both INT8 flavours share one run."""
    from onebyone.optimize.precision.calibrate import Calibration

    if not path.is_file():
        return None
    try:
        calibration = Calibration.load(path)
    except UserError:
        return None  # unreadable: calibrate again and replace it
    same = (calibration.model_sha256, calibration.source, calibration.samples) == (model_sha256, data.description,
                                                                                    data.count)
    return calibration if same else None


def _to_fp16(model: ir.Model, calibration: Calibration | None, keep: set[str], fp16_io: bool) -> dict:
    from onebyone.optimize.precision.fp16 import convert_to_fp16

    amax = calibration.ranges("minmax", 100.0) if calibration else None
    report = convert_to_fp16(model, amax, keep, fp16_io)
    stdout.print(f"fp16: {report.fp16_nodes} nodes in FP16, {len(report.fp32_nodes)} kept FP32, "
                 f"{report.casts} casts" + ("" if calibration else "  (activation ranges unchecked: no --calib)"))
    for name, reason in report.fp32_nodes.items():
        stdout.print(f"  FP32 {name}: {reason}")
    return {"io": "fp16" if fp16_io else "fp32", "fp32_nodes": report.fp32_nodes,
            "activation_ranges_checked": calibration is not None}


def _wants_sensitivity(args: argparse.Namespace) -> bool:
    return args.sensitivity or args.accuracy_budget is not None or args.auto_exclude is not None


def _fallback(model: ir.Model, ranges: dict[str, TensorRange], args: argparse.Namespace, exclude: set[str],
              data: DataSource, means: dict[str, np.ndarray] | None) -> dict:
    """Rank the layers and run the fallback on (up to FALLBACK_SAMPLES of) the calibration data; report and record
    it. With --sensitivity alone nothing is excluded."""
    from onebyone.optimize.precision.sensitivity import fall_back

    inputs = data.read(0, min(data.count, FALLBACK_SAMPLES))
    if args.accuracy_budget is not None:
        budget = args.accuracy_budget
        result = fall_back(model, ranges, args.flavour, exclude, inputs, lambda _, drop: drop <= budget,
                           weight_range=args.weight_range, input_means=means)
    elif args.auto_exclude is not None:
        result = fall_back(model, ranges, args.flavour, exclude, inputs,
                           lambda count, _: count >= args.auto_exclude, weight_range=args.weight_range,
                           input_means=means)
    else:
        result = fall_back(model, ranges, args.flavour, exclude, inputs, lambda count, _: count >= 0,
                           always_rank=True, weight_range=args.weight_range, input_means=means)
    for rank, (layer, error) in enumerate(result.ranking[:None if args.sensitivity else 5], start=1):
        stdout.print(f"  sensitivity {rank}. {layer}: output rel-L2 {error:.3g} when quantized alone")
    stdout.print(f"fallback: drop {result.drop_before:.2f} → {result.drop_after:.2f} pt ({result.metric}, "
                 f"{len(inputs)} samples); kept float: {', '.join(result.excluded) or 'nothing'}")
    return {"accuracy_budget_pt": args.accuracy_budget, "auto_exclude": args.auto_exclude,
            "excluded": result.excluded, "drop_before_pt": result.drop_before, "drop_after_pt": result.drop_after,
            "metric": result.metric, "samples": len(inputs), "ranking": result.ranking}


def _input_means(args: argparse.Namespace, calibration: Calibration) -> dict[str, np.ndarray] | None:
    """The tap means bias correction uses, or None with --no-bias-correction."""
    return calibration.input_means if args.bias_correction else None


def _to_int8(model: ir.Model, calibration: Calibration, args: argparse.Namespace, exclude: set[str],
             keep: set[str], data: DataSource | None) -> dict | None:
    """Q/DQ from the calibration (nodes in `exclude` or `keep` stay float), then FP16 float parts when asked (nodes
    in `keep` stay FP32)."""
    from onebyone.optimize.precision.qdq import TensorRange, insert_qdq
    from onebyone.optimize.precision.trt_rules import trt_violations
    from onebyone.runtime.bundle.int8_overflow import overflow_prone

    amax = calibration.ranges(args.method, args.percentile)
    ranges = {name: TensorRange(amax[name], stats.minimum, stats.maximum)
              for name, stats in calibration.statistics.items()}
    fallback = None
    if data is not None and _wants_sensitivity(args):
        fallback = _fallback(model, ranges, args, exclude | keep, data, _input_means(args, calibration))
        exclude = exclude | set(fallback["excluded"])
    report = insert_qdq(model, ranges, args.flavour, exclude | keep, args.weight_range, _input_means(args, calibration))
    for rank, layer in enumerate(fallback["excluded"] if fallback else [], start=1):
        report.float_nodes[layer] = f"kept float by the sensitivity fallback (rank {rank})"
    levels = WEIGHT_LEVELS[args.weight_range]
    stdout.print(f"int8 ({args.flavour}, {args.method}, {args.weight_range} weights ±{levels}): "
                 f"{report.activations} activations and {report.weights} weights quantized, "
                 f"{len(report.float_nodes)} weighted nodes left float, {report.bias_corrected} biases corrected")
    for name, reason in report.float_nodes.items():
        stdout.print(f"  float {name}: {reason}")
    for name, note in report.degenerate.items():
        stdout.print(f"[bold yellow]warning:[/] tensor {name!r} has no usable calibrated range, {note}")
    float_parts = _to_fp16(model, calibration, keep, args.fp16_io) if args.float_dtype == "fp16" else {}
    prone = overflow_prone(model)  # none with safe weights, by construction (optimize/precision/qdq.py)
    if prone:
        stdout.print(f"  {len(prone)} weight tensors can overflow the int8 dot products of x86 CPUs without VNNI "
                     "(--weight-range full): the kernel check tells where it runs right; --weight-range safe "
                     "for such CPUs")
    if args.flavour == "trt":
        problems = trt_violations(model, report.float_nodes, float_parts.get("fp32_nodes"))
        if problems:
            raise CheckFailed("the Q/DQ graph breaks TensorRT's rules (a onebyone bug; nothing was written): "
                              + "; ".join(problems))
    return {"flavour": args.flavour, "method": args.method, "weight_range": args.weight_range, "weight_levels": levels,
            "overflow_prone_tensors": len(prone), "bias_corrected": report.bias_corrected,
            "percentile": args.percentile if args.method == "percentile" else None,
            "float_nodes": report.float_nodes, "float_dtype": args.float_dtype, "float_parts": float_parts,
            "degenerate_ranges": report.degenerate} | ({"fallback": fallback} if fallback else {})
