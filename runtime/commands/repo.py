"""`onebyone triton-repo BUNDLE_OR_ARTIFACT... -o model_repository/`: a Triton model repository, one model each."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.runtime.commands.arguments import non_negative_float, positive_int
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.serve.triton_repo import ACCELERATOR_PRECISIONS

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="+", help="bundle directories (their model.onnx, or the plan with "
                                                   "--backend tensorrt), .onnx or .plan files")
    parser.add_argument("-o", "--output", type=Path, default=Path("model_repository"),
                        help="repository directory (default model_repository)")
    parser.add_argument("--backend", choices=("auto", "onnxruntime", "openvino", "tensorrt"), default="auto",
                        help="auto/onnxruntime: ONNX files (a bundle's model.onnx) for Triton's onnxruntime backend; "
                             "openvino: the same for its openvino backend (CPU instances); tensorrt: a bundle's "
                             "recorded plan")
    parser.add_argument("--max-batch", type=positive_int, default=32, help="max_batch_size (default 32)")
    parser.add_argument("--max-delay-ms", type=non_negative_float, default=2.0,
                        help="dynamic batching queue delay (default 2)")
    parser.add_argument("--no-batching", action="store_true", help="no dynamic_batching block")
    parser.add_argument("--instances", type=positive_int, default=1, help="instance_group count (default 1)")
    parser.add_argument("--instance-kind", choices=("gpu", "cpu"),
                        help="default gpu (cpu for --backend openvino)")
    parser.add_argument("--performance-hint", choices=("LATENCY", "THROUGHPUT"), default="LATENCY",
                        help="openvino: PERFORMANCE_HINT (default LATENCY; THROUGHPUT runs one stream per instance)")
    parser.add_argument("--threads", type=positive_int, help="openvino: INFERENCE_NUM_THREADS (default: every core)")
    parser.add_argument("--trt-accelerator", choices=ACCELERATOR_PRECISIONS,
                        help="ONNX on GPU: run it through ONNX Runtime's TensorRT accelerator at this precision")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.serve.models import model_name
    from onebyone.runtime.serve.triton_repo import RepoOptions, write_model
    from onebyone.runtime.sessions.locate import locate

    openvino = args.backend == "openvino"
    if not openvino and (args.threads is not None or args.performance_hint != "LATENCY"):
        raise UserError("--threads and --performance-hint apply to --backend openvino")
    options = RepoOptions(max_batch=args.max_batch,
                          max_delay_us=None if args.no_batching else round(args.max_delay_ms * 1000),
                          instances=args.instances, kind=args.instance_kind or ("cpu" if openvino else "gpu"),
                          trt_accelerator=args.trt_accelerator, engine="openvino" if openvino else "onnxruntime",
                          performance_hint=args.performance_hint, threads=args.threads)
    targets = [locate(target, args.backend) for target in args.targets]
    names = [model_name(target) for target in targets]
    if len(set(names)) != len(names):
        raise UserError(f"two targets give the same model name ({', '.join(names)}); list each once")
    for name, target in zip(names, targets, strict=True):
        path = write_model(args.output, name, target, options)
        backend = "tensorrt" if target.kind == "plan" else options.engine
        stdout.print(f"{path}/config.pbtxt  ({target.path.name}, backend {backend})")
    return 0
