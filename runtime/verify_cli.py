"""`onebyone verify BUNDLE`: re-check every ONNX artifact and TensorRT plan of a bundle against its golden torch
outputs (plans are reported as skipped on machines without an NVIDIA GPU and TensorRT)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from runtime.bundle import GOLDEN_NAME, Tolerance, read_manifest
from runtime.check import ArtifactCheck, check_artifact
from runtime.files import sha256_file
from runtime.golden import Golden
from runtime.labelled import LabelledSet
from runtime.locate import PLAN_KIND

stdout = Console(highlight=False, soft_wrap=True)


def register(stages: argparse._SubParsersAction) -> None:
    parser = stages.add_parser("verify", help="check a bundle's ONNX artifacts and TensorRT plans against its "
                                              "golden torch outputs")
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
    return 1 if failures else 0


def tensorrt_missing() -> str | None:
    """Why TensorRT plans cannot be checked on this machine, or None when they can."""
    from importlib.util import find_spec

    if find_spec("tensorrt") is None or find_spec("pycuda") is None:
        return "checking a TensorRT plan needs an NVIDIA GPU, TensorRT and pycuda (pip install 'onebyone[tensorrt]')"
    return None


def check_plan(path: Path, golden: Golden, tolerance: Tolerance, labelled: LabelledSet | None) -> ArtifactCheck:
    """The plan in a TensorRT session: golden parity, and labelled accuracy in batches the engine accepts."""
    from runtime.golden import compare
    from runtime.session import open as open_session

    with open_session(path, "tensorrt", self_check=False) as session:
        parity = compare(golden.outputs, session.run_batched(golden.inputs), tolerance)
        accuracy = None
        if labelled is not None:
            logits = session.run_batched({session.inputs[0].name: labelled.inputs})[session.outputs[0].name]
            accuracy = labelled.accuracy(logits)
    return ArtifactCheck(parity=parity, accuracy=accuracy)
