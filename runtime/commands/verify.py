"""`onebyone verify BUNDLE`: re-check every ONNX artifact and TensorRT plan of a bundle against its golden torch
outputs (plans are reported as skipped on machines without an NVIDIA GPU and TensorRT), and run the kernel check
on every INT8 ONNX artifact: the engine that deploys it against the file's exact Q/DQ math."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, read_manifest
from onebyone.runtime.bundle.tensors import DYNAMIC
from onebyone.runtime.bundle.tolerances import Tolerance
from onebyone.runtime.core.errors import CheckFailed
from onebyone.runtime.core.files import sha256_file
from onebyone.runtime.parity.check import MAX_BATCH, ArtifactCheck, check_artifact
from onebyone.runtime.parity.kernel_check import KernelCheck, check_kernels, fresh_inputs
from onebyone.runtime.sessions.locate import PLAN_KIND

stdout = Console(highlight=False, soft_wrap=True)
FRESH_SAMPLES = 16  # new random samples per INT8 kernel check


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bundle directory (has manifest.json)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print one parity line per ONNX artifact (with top-1 accuracy when the bundle carries labelled data);
    exit 1 if any artifact was modified since it was recorded, or is out of tolerance."""
    manifest = read_manifest(args.bundle)
    golden = Golden.load(args.bundle / GOLDEN_NAME)
    labelled = LabelledSet.of_bundle(args.bundle, manifest)
    if labelled is not None:
        stdout.print(f"labelled data: {labelled.description}")
    failures = 0
    for name, record in manifest.artifacts.items():
        if record.kind not in ("onnx", PLAN_KIND):
            continue
        path = args.bundle / name
        if not path.is_file() or sha256_file(path) != record.sha256:
            stdout.print(f"{name:<24} FAIL  missing or modified since it was recorded in the manifest")
            failures += 1
            continue
        if record.kind == PLAN_KIND and (missing := tensorrt_missing()):
            stdout.print(f"{name:<24} {record.precision:<5} SKIP  {missing}")
            continue
        check = check_artifact if record.kind == "onnx" else check_plan
        result = check(path, golden, record.tolerance, labelled)
        stdout.print(f"{name:<24} {record.precision:<5} {result.describe()}")
        failures += not result.ok
        if record.kind == "onnx" and record.precision == "int8":
            kernels = kernel_check(path, golden, labelled)
            stdout.print(f"{'':<30} {kernels.describe()}")
            failures += not kernels.ok
    if failures:
        raise CheckFailed(f"{failures} check(s) of {args.bundle} failed (above)")
    return 0


def kernel_check(path: Path, golden: Golden, labelled: LabelledSet | None) -> KernelCheck:
    """The INT8 file in its deployment session (ONNX Runtime, every optimization on) against its exact Q/DQ math, on
    the golden inputs, the labelled data and FRESH_SAMPLES new random samples (whole batches of a fixed-batch model)."""
    from onebyone.runtime.sessions.opening import open as open_session

    fresh = fresh_inputs(golden.inputs, FRESH_SAMPLES, np.random.default_rng())
    inputs = {name: np.concatenate([values, *([labelled.inputs] if labelled is not None else []), fresh[name]])
              for name, values in golden.inputs.items()}
    with open_session(path, self_check=False) as session:
        fixed = session.inputs[0].shape[0]
        if fixed != DYNAMIC:
            inputs = {name: values[:len(values) - len(values) % fixed] for name, values in inputs.items()}
        outputs = session.run_batched(inputs, batch=MAX_BATCH if fixed == DYNAMIC else fixed)
    return check_kernels(path, inputs, outputs)


def tensorrt_missing() -> str | None:
    """Why TensorRT plans cannot be checked on this machine, or None when they can."""
    from importlib.util import find_spec

    from onebyone.runtime.sessions.cuda_memory import driver_installed

    if find_spec("tensorrt") is None or not driver_installed():
        return ("checking a TensorRT plan needs an NVIDIA GPU, TensorRT and cuda-python or pycuda "
                "(pip install 'onebyone[tensorrt]')")
    return None


def check_plan(path: Path, golden: Golden, tolerance: Tolerance, labelled: LabelledSet | None) -> ArtifactCheck:
    """The plan in a TensorRT session: golden parity, and labelled accuracy in batches the engine accepts."""
    from onebyone.runtime.parity.metrics import check_golden
    from onebyone.runtime.sessions.opening import open as open_session

    with open_session(path, "tensorrt", self_check=False) as session:
        parity = check_golden(golden, session.run_batched(golden.inputs), tolerance)
        accuracy = None
        if labelled is not None:
            logits = session.run_batched({session.inputs[0].name: labelled.inputs})[session.outputs[0].name]
            accuracy = labelled.accuracy(logits)
    return ArtifactCheck(parity=parity, accuracy=accuracy)
