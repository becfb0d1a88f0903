"""`onebyone build MODEL.onnx [-o MODEL.plan]`: a TensorRT engine and its `MODEL.plan.json` (GPU only; the stage is
runtime/sessions/build_stage.py, `onebyone.stages.build` from Python)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.runtime.bundle.plan import DEFAULT_MAX_BATCH, DEFAULT_MIN_BATCH, HARDWARE_COMPATIBILITY, BuildOptions
from onebyone.runtime.commands.arguments import options_from, positive_int

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Build a strongly typed TensorRT engine: precision comes from the ONNX (FP16 types, "
                          "Q/DQ). Writes MODEL.plan and MODEL.plan.json (TensorRT version, GPU, ONNX sha256, "
                          "profiles).")
    parser.add_argument("onnx", type=Path, help="ONNX file (an export, optimize or quantize output)")
    parser.add_argument("-o", "--output", type=Path, help="plan path (default: beside the ONNX, suffix .plan)")
    parser.add_argument("--min-batch", type=positive_int, default=DEFAULT_MIN_BATCH)
    parser.add_argument("--opt-batch", type=positive_int, help="batch TensorRT tunes for (default min(8, max))")
    parser.add_argument("--max-batch", type=positive_int, default=DEFAULT_MAX_BATCH)
    parser.add_argument("--shapes", action="append", default=[], metavar="NAME:MIN..OPT..MAX",
                        help="an optimization profile: each input's min, opt and max shapes, e.g. "
                             "input:1x3x256x256..4x3x512x512..8x3x1024x1024 (inputs comma-separated); repeat for "
                             "several profiles — the engine picks one that contains each request's shape. Needed "
                             "for a dynamic height/width; replaces the batch options")
    parser.add_argument("--workspace", dest="workspace_mib", type=positive_int, metavar="MIB",
                        help="workspace limit in MiB")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file, read if present and updated")
    parser.add_argument("--opt-level", type=int, default=3, choices=range(6), metavar="0-5",
                        help="builder optimization level (default 3)")
    parser.add_argument("--hardware-compatibility", default="none", choices=HARDWARE_COMPATIBILITY,
                        help="GPUs the plan may run on beyond the builder's architecture: ampere+ (compute capability "
                             "8.0 or later) or same-compute-capability; recorded in plan.json (default none)")
    parser.add_argument("--version-compatible", action="store_true",
                        help="later TensorRT releases of the same major version may run the plan (it carries the "
                             "lean runtime; Triton's tensorrt backend needs --backend-config=tensorrt,"
                             "version-compatible=true)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.stages import build

    options = options_from(args, BuildOptions, shapes=tuple(args.shapes))
    stdout.print(build(args.onnx, options, output=args.output).describe())
    return 0
