"""`onebyone verify BUNDLE`: re-check every ONNX artifact and TensorRT plan of a bundle against its golden torch
outputs (plans are reported as skipped on machines without an NVIDIA GPU and TensorRT), and run the kernel check
on every INT8 ONNX artifact: the engine that deploys it against the file's exact Q/DQ math."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, read_manifest
from onebyone.runtime.bundle.tolerances import Tolerance
from onebyone.runtime.core.errors import CheckFailed
from onebyone.runtime.core.files import sha256_file
from onebyone.runtime.parity.check import ArtifactCheck, check_artifact
from onebyone.runtime.parity.kernel_check import KernelCheck
from onebyone.runtime.sessions.locate import PLAN_KIND

stdout = Console(highlight=False, soft_wrap=True)


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
            failures += not engines_pass(args.bundle, name)
    if failures:
        raise CheckFailed(f"{failures} check(s) of {args.bundle} failed (above)")
    return 0


def engines_pass(bundle: Path, name: str) -> bool:
    """Kernel-check an INT8 file on every installed CPU engine (recorded in the manifest) and print a line each; True
    when the engine `auto` now opens it on passed. An engine that failed is reported and never picked by `auto`."""
    from onebyone.runtime.sessions.engine_checks import check_and_record
    from onebyone.runtime.sessions.opening import auto_backend

    results = check_and_record(bundle, name)
    chosen = auto_backend(bundle / name)
    print_engine_checks(results, chosen)
    return results[chosen].ok


def print_engine_checks(results: dict[str, KernelCheck], chosen: str | None) -> None:
    """One line per engine's kernel check, naming the engine `auto` opens the file on."""
    for engine, check in results.items():
        role = "auto" if engine == chosen else ("not used by auto here" if not check.ok else "")
        stdout.print(f"{'':<30} {engine:<11} {check.describe()}" + (f"  ({role})" if role else ""))


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
