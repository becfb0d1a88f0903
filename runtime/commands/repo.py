"""`onebyone triton-repo BUNDLE_OR_ARTIFACT... -o model_repository/`: a Triton model repository, one model each."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.runtime.bundle.plan import PlanInfo, read_plan_info, where_it_runs
from onebyone.runtime.commands.arguments import add_batching_options, max_delay_us, options_from, positive_int
from onebyone.runtime.serve.triton_repo import ACCELERATOR_PRECISIONS

stdout = Console(highlight=False, soft_wrap=True)


def triton_choices() -> tuple[str, ...]:
    """auto and the registry's engines that have a Triton backend."""
    from onebyone.runtime.sessions import engines

    return ("auto", *(e.name for e in engines.engines() if e.triton_backend is not None), "python")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="+", help="bundle directories (their model.onnx, or the plan with "
                                                   "--backend tensorrt), .onnx or .plan files")
    parser.add_argument("-o", "--output", type=Path, default=Path("model_repository"),
                        help="repository directory (default model_repository)")
    parser.add_argument("--backend", dest="engine", choices=triton_choices(), default="auto",
                        help="auto/onnxruntime: ONNX files (a bundle's model.onnx) for Triton's onnxruntime backend; "
                             "openvino: the same for its openvino backend (CPU instances); tensorrt: a bundle's "
                             "recorded plan; python: any artifact, run by onebyone in Triton's Python backend")
    parser.add_argument("--python-engine", default="auto",
                        help="with --backend python: the onebyone engine inside Triton (default auto, as `onebyone "
                             "infer` picks it; e.g. openvino for an INT8 file on AMX/VNNI CPUs)")
    add_batching_options(parser)  # max_batch_size and the dynamic_batching block
    parser.add_argument("--instances", type=positive_int, default=1, help="instance_group count (default 1)")
    parser.add_argument("--instance-kind", choices=("gpu", "cpu"),
                        help="default gpu (cpu for --backend openvino or python)")
    parser.add_argument("--performance-hint", choices=("LATENCY", "THROUGHPUT"), default="LATENCY",
                        help="openvino: PERFORMANCE_HINT (default LATENCY; THROUGHPUT runs one stream per instance)")
    parser.add_argument("--threads", type=positive_int, help="openvino: INFERENCE_NUM_THREADS (default: every core)")
    parser.add_argument("--trt-accelerator", choices=ACCELERATOR_PRECISIONS,
                        help="ONNX on GPU: run it through ONNX Runtime's TensorRT accelerator at this precision")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.serve.triton_repo import PYTHON, RepoOptions, write_repository

    cpu_only = args.engine in ("openvino", PYTHON)
    options = options_from(args, RepoOptions, max_delay_us=max_delay_us(args),
                           instance_kind=args.instance_kind or ("cpu" if cpu_only else "gpu"))
    for written in write_repository(args.targets, args.output, options):
        stdout.print(f"{written.path}/config.pbtxt  ({written.source.name}, backend {written.backend})")
        if written.backend == "tensorrt":
            print_where_it_runs(read_plan_info(written.source))
    return 0


def print_where_it_runs(info: PlanInfo) -> None:
    """A plan's reach, and the tritonserver flag a version-compatible one needs (tensorrt_backend PR #74)."""
    stdout.print(f"  the plan runs with {where_it_runs(info)}")
    if info.options.get("version_compatible"):
        stdout.print("  start tritonserver with --backend-config=tensorrt,version-compatible=true")
