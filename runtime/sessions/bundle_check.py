"""Verify: re-check every ONNX artifact and TensorRT plan of a bundle against its golden torch outputs (plans are
skipped, with the reason, on machines without an NVIDIA GPU and TensorRT), and run the kernel check of every INT8
ONNX artifact on each installed CPU engine (recorded for `auto`), and lint every file made for TensorRT again for the
releases its record names (runtime/preflight/lint.py). `onebyone verify` and `onebyone.stages.verify` are
shells over `verify()` here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, read_manifest
from onebyone.runtime.bundle.tolerances import Tolerance
from onebyone.runtime.core.files import sha256_file
from onebyone.runtime.parity.check import ArtifactCheck, check_artifact
from onebyone.runtime.parity.kernel_check import KernelCheck
from onebyone.runtime.preflight.lint import Lint, lint_file
from onebyone.runtime.sessions.engine_checks import stock_consumers
from onebyone.runtime.sessions.locate import PLAN_KIND


@dataclasses.dataclass
class ArtifactVerdict:
    """One artifact's re-check."""

    name: str
    precision: str | None
    verdict: str  # the check's description, or why it failed or was skipped
    ok: bool  # False: modified, out of tolerance, or the engine `auto` uses fails its kernel check
    skipped: bool = False
    kernel_checks: dict[str, KernelCheck] = dataclasses.field(default_factory=dict)  # INT8 ONNX: per CPU engine
    auto_engine: str | None = None  # INT8 ONNX: the engine `auto` opens it on here
    lint: Lint | None = None  # files made for TensorRT: its parser rules, for the releases the manifest names


@dataclasses.dataclass
class VerifyResult:
    bundle: Path
    labelled: str | None  # the description of the bundle's labelled data, when it carries some
    artifacts: list[ArtifactVerdict]

    @property
    def failed(self) -> list[str]:
        return [artifact.name for artifact in self.artifacts if not artifact.ok]


def verify(bundle: Path) -> VerifyResult:
    manifest = read_manifest(bundle)
    labelled = LabelledSet.of_bundle(bundle, manifest)
    verdicts = []
    for name, record in manifest.artifacts.items():
        if record.kind not in ("onnx", PLAN_KIND):
            continue
        path = bundle / name
        if not path.is_file() or sha256_file(path) != record.sha256:
            verdicts.append(ArtifactVerdict(name, None, "missing or modified since it was recorded in the manifest",
                                            ok=False))
            continue
        if record.kind == PLAN_KIND and (missing := tensorrt_missing()):
            verdicts.append(ArtifactVerdict(name, record.precision, missing, ok=True, skipped=True))
            continue
        judged_on = manifest.golden_of(name)
        golden = Golden.load(bundle / judged_on)
        result = (check_artifact(path, golden, record.tolerance, labelled, consumers=stock_consumers(record.precision))
                  if record.kind == "onnx" else check_plan(path, golden, record.tolerance, labelled))
        held_out = f"on {judged_on} (held-out real samples): " if judged_on != GOLDEN_NAME else ""
        verdict = ArtifactVerdict(name, record.precision, held_out + result.describe(), result.ok)
        if record.kind == "onnx" and record.precision == "int8":
            verdict.kernel_checks, verdict.auto_engine = engine_checks(bundle, name)
            verdict.ok = verdict.ok and verdict.kernel_checks[verdict.auto_engine].ok
        if record.kind == "onnx" and record.tensorrt_lint is not None:
            verdict.lint = lint_file(path, record.tensorrt_lint["versions"])
            verdict.ok = verdict.ok and verdict.lint.accepted
        verdicts.append(verdict)
    return VerifyResult(bundle, labelled.description if labelled is not None else None, verdicts)


def engine_checks(bundle: Path, name: str) -> tuple[dict[str, KernelCheck], str]:
    """Kernel-check an INT8 file on every installed CPU engine (recorded in the manifest); the results and the engine
    `auto` now opens it on. An engine that failed is never picked by `auto`."""
    from onebyone.runtime.sessions.engine_checks import check_and_record
    from onebyone.runtime.sessions.opening import auto_backend

    results = check_and_record(bundle, name)
    return results, auto_backend(bundle / name)


def tensorrt_missing() -> str | None:
    """Why TensorRT plans cannot be checked on this machine, or None when they can."""
    from onebyone.runtime.sessions import engines
    from onebyone.runtime.sessions.cuda_memory import driver_installed

    if not engines.engine("tensorrt").available() or not driver_installed():
        return ("checking a TensorRT plan needs an NVIDIA GPU, TensorRT and cuda-python or pycuda "
                "(pip install 'onebyone[tensorrt]')")
    return None


def check_plan(path: Path, golden: Golden, tolerance: Tolerance, labelled: LabelledSet | None) -> ArtifactCheck:
    """The plan in a TensorRT session: golden parity, and labelled accuracy in batches the engine accepts."""
    from onebyone.runtime.parity.metrics import check_golden
    from onebyone.runtime.sessions.opening import open as open_session

    with open_session(path, "tensorrt", self_check=False) as session:
        parity = check_golden(golden, session.run_batched, tolerance)
        accuracy = None
        if labelled is not None:
            logits = session.run_batched({session.inputs[0].name: labelled.inputs})[session.outputs[0].name]
            accuracy = labelled.accuracy(logits)
    return ArtifactCheck(parity=parity, accuracy=accuracy, metric=labelled.metric if labelled else "top-1")
