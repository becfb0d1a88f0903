"""`onebyone verify BUNDLE`: re-check every ONNX artifact of a bundle against its golden torch outputs."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from runtime.bundle import GOLDEN_NAME, read_manifest
from runtime.check import check_artifact
from runtime.files import sha256_file
from runtime.golden import Golden
from runtime.labelled import LabelledSet

stdout = Console(highlight=False, soft_wrap=True)


def register(stages: argparse._SubParsersAction) -> None:
    parser = stages.add_parser("verify", help="check a bundle's ONNX artifacts against its golden torch outputs")
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
        if record.kind != "onnx":
            continue
        path = args.bundle / name
        if not path.is_file() or sha256_file(path) != record.sha256:
            stdout.print(f"{name:<24} FAIL  missing or modified since it was recorded in the manifest")
            failures += 1
            continue
        result = check_artifact(path, golden, record.tolerance, labelled)
        stdout.print(f"{name:<24} {record.precision:<5} {result.describe()}")
        failures += not result.ok
    return 1 if failures else 0
