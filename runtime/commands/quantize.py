"""`onebyone quantize IN.onnx -o OUT.onnx --precision fp16|int8|bf16`: the command line of the quantize stage
(optimize/precision/quantize.py holds the stage; `onebyone.stages.quantize` is the same from Python)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.optimize.precision.flavours import DEFAULT_BATCH_SIZE, FLAVOURS, FLOAT_DTYPES, PRECISIONS, WEIGHT_LEVELS
from onebyone.optimize.precision.ranges import DEFAULT_METHOD, DEFAULT_PERCENTILE, METHODS
from onebyone.optimize.precision.trt_cache import DEFAULT_TRT_VERSION
from onebyone.runtime.commands.arguments import add_data_source, names, options_from, positive_int
from onebyone.runtime.commands.verify import print_engine_checks
from onebyone.runtime.core.version import installed_tensorrt

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Write precision into the ONNX: FP16 types, or INT8 Q/DQ from streamed calibration "
                          "(TensorRT or ONNX Runtime flavour).")
    parser.add_argument("input", type=Path, help="FP32 ONNX file (in a bundle, the manifest is updated)")
    parser.add_argument("-o", "--output", type=Path, help="output ONNX (default INPUT.fp16.onnx / INPUT.int8-FLAVOUR"
                                                          ".onnx)")
    parser.add_argument("--precision", required=True, choices=PRECISIONS,
                        help="fp16: FP16 tensors; int8: calibrated Q/DQ; bf16: the FP32 graph run with OpenVINO's BF16 "
                             "inference hint (CPUs with AVX512-BF16 or AMX; needs onebyone[openvino])")
    add_data_source(parser, "--calib", "--calib-samples",
                    "calibration data: {sources}; plain `digits` is digits-calibration; or a calib.json made for this "
                    "model (required for int8; for fp16 it keeps out-of-range layers FP32)",
                    "use at most N samples (default: all; random: 64)")
    parser.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE,
                        help=f"calibration batch size (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD,
                        help=f"INT8 range method (default {DEFAULT_METHOD}: the best or tied best on pretrained "
                             "EfficientNet-Lite0/1, docs/precision.md)")
    parser.add_argument("--percentile", type=float, default=DEFAULT_PERCENTILE,
                        help=f"for --method percentile (default {DEFAULT_PERCENTILE})")
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
    parser.add_argument("--exclude", type=names, default=(), help="comma-separated node names to leave unquantized "
                                                                  "(int8)")
    parser.add_argument("--keep-fp32", type=names, default=(), help="comma-separated node names to keep in FP32")
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


def run(args: argparse.Namespace) -> int:
    from onebyone.optimize.precision.quantize import QuantizeOptions
    from onebyone.stages import quantize

    result = quantize(args.input, options_from(args, QuantizeOptions))
    for message in result.messages:
        if message.startswith("warning: "):
            stdout.print("[bold yellow]warning:[/] " + message.removeprefix("warning: "), markup=True)
        else:
            stdout.print(message, markup=False)
    stdout.print(result.summary, markup=False)
    if result.kernel_checks:  # recorded for `auto`; verify fails on a bad default engine
        print_engine_checks(result.kernel_checks, result.auto_engine)
    return 0
