"""`onebyone parity REFERENCE CANDIDATE...`: every candidate against the reference on the same data — output metrics
against per-precision bounds, and for ONNX candidates the per-layer error with the first layer that diverges.

The reference is the torch model (a zoo name, package.module:factory, or a bundle directory: the model it was
exported from) or an FP32 ONNX. INT8 ONNX candidates also get the kernel check (runtime/parity/kernel_check.py):
the same outputs against the file's exact Q/DQ math. Exit codes: 0 all pass, 1 a candidate fails, 2 a user error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from onebyone.runtime.bundle.accuracy import score
from onebyone.runtime.bundle.labelled import LABELLED_NAME, LabelledSet
from onebyone.runtime.bundle.sources import SOURCES_HELP, DataSource, open_source
from onebyone.runtime.bundle.tolerances import TOLERANCES, Tolerance
from onebyone.runtime.commands.arguments import positive_int
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.errors import CheckFailed, UserError
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.parity.kernel_check import check_kernels
from onebyone.runtime.parity.metrics import compare
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.opening import BACKENDS
from onebyone.runtime.sessions.opening import open as open_session

stdout = Console(highlight=False, soft_wrap=True)
LAYER_SAMPLES = 32  # per-layer localisation runs on the first samples only
RANDOM_SAMPLES = 16  # `random` data when --samples is not given


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="zoo name, package.module:factory, bundle directory (its torch model) "
                                          "or an FP32 .onnx")
    parser.add_argument("candidates", nargs="+", help=".onnx, .plan or bundle directories")
    parser.add_argument("--data", help=f"{SOURCES_HELP}; plain `digits` is digits-test (default: the bundle's "
                                       "labelled data, else random)")
    parser.add_argument("--samples", type=positive_int, help="use at most this many samples")
    parser.add_argument("--json", type=Path, help="write every metric and layer as JSON")
    parser.add_argument("--report", type=Path, help="write a self-contained HTML report with plots")
    parser.add_argument("--max-rel", type=float, help="override max|diff|/max|ref| for every candidate")
    parser.add_argument("--min-cosine", type=float, help="override the cosine-similarity bound")
    parser.add_argument("--min-top1", type=float, help="override the top-1 agreement bound (0..1)")
    parser.add_argument("--no-layers", dest="layers", action="store_false", help="skip per-layer localisation")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="the engine that runs the candidates (default auto, as in `onebyone infer`)")
    parser.set_defaults(run=run)


def open_reference(target: str) -> Session:
    backend = "torch" if Path(target).is_dir() else "auto"
    return open_session(target, backend, self_check=False)


def _data(args: argparse.Namespace, reference: Session) -> DataSource:
    """--data (plain `digits`: the held-out test split), else the bundle's labelled data, else `random`."""
    bundle = reference.target.bundle
    if args.data is None and bundle is not None and (bundle / LABELLED_NAME).is_file():
        labelled = LabelledSet.load(bundle / LABELLED_NAME)
        count = args.samples or len(labelled.labels)
        return DataSource.of_arrays(labelled.description, labelled.inputs[:count], labelled.labels[:count])
    spec = reference.inputs[0]
    return open_source(args.data or "random", tuple(None if d < 0 else d for d in spec.shape[1:]),
                       reference.model.preprocess, args.samples, spec.name, digits="digits-test",
                       random_samples=RANDOM_SAMPLES)


def check_compatible(reference: Session, candidate: Session) -> None:
    """Same input and output names, and the same non-batch dimensions."""
    def signature(specs: list) -> list[tuple[str, tuple[int, ...]]]:
        return [(s.name, tuple(s.shape[1:])) for s in specs]

    for kind in ("inputs", "outputs"):
        ref, got = signature(getattr(reference, kind)), signature(getattr(candidate, kind))
        if ref != got:
            raise UserError(f"{candidate.target.label} has {kind} {got}, the reference has {ref}; parity compares "
                            "the same model in another form")


def tolerance_for(precision: str, args: argparse.Namespace) -> Tolerance:
    """The precision's row of the tolerance table, with the bounds given on the command line instead."""
    given = {"max_rel": args.max_rel, "min_cosine": args.min_cosine, "min_top1": args.min_top1}
    return dataclasses.replace(TOLERANCES.get(precision, TOLERANCES["fp32"]),
                               **{name: value for name, value in given.items() if value is not None})


def _precision(candidate: Session) -> str:
    if candidate.model.precision is not None:
        return candidate.model.precision
    if candidate.target.kind == "onnx":
        from onebyone.runtime.bundle.onnx_file import graph_precision, load_model

        return graph_precision(load_model(candidate.target.path))
    return "fp32"


def _fp32_graph(reference: Session, candidate: Session) -> Path | None:
    """The FP32 ONNX to localise against: the reference when it is ONNX, else the candidate's bundle export."""
    if reference.target.kind == "onnx":
        return reference.target.path
    bundle = candidate.target.bundle
    if bundle is not None:
        primary = candidate.target.manifest.primary_onnx()
        return bundle / primary if primary else None
    return None


def compare_candidate(reference: Session, reference_outputs: dict, candidate: Session, inputs: np.ndarray,
                      labels: np.ndarray | None, args: argparse.Namespace) -> dict[str, Any]:
    from onebyone.runtime.parity.layers import localise

    check_compatible(reference, candidate)
    outputs = candidate.run_batched({candidate.inputs[0].name: inputs}, batch=32)
    precision = _precision(candidate)
    parity = compare(reference_outputs, outputs, tolerance_for(precision, args), labels)
    record: dict[str, Any] = {"artifact": candidate.target.label, "backend": candidate.backend,
                              "precision": precision, "bounds": parity.tolerance.as_record(),
                              "metrics": parity.metrics.as_record(), "failures": parity.failures, "outputs": outputs}
    if (accuracies := parity.metrics.accuracies()) is not None:
        reference_accuracy, accuracy = accuracies
        share = accuracy.top1 / reference_accuracy.top1 if reference_accuracy.top1 else float("nan")
        record["accuracy"] = accuracy.as_record() | {"share_of_reference": share}
        record["reference_accuracy"] = reference_accuracy.as_record()
    if precision == "int8" and candidate.target.kind == "onnx":
        kernels = check_kernels(candidate.target.path, {candidate.inputs[0].name: inputs}, outputs)
        record["kernel"] = kernels.as_record()
        record["failures"] += [f"kernel check: {failure}" for failure in kernels.failures]
    in_file = candidate.target.kind == "onnx" and precision != "bf16"  # bf16 is OpenVINO's, not the graph's
    fp32 = _fp32_graph(reference, candidate) if args.layers and in_file else None
    if fp32 is not None:
        record["layers"] = localise(fp32, candidate.target.path, inputs[:LAYER_SAMPLES], precision).as_record()
    return record


def describe(record: dict[str, Any]) -> str:
    m = record["metrics"]
    verdict = "FAIL" if record["failures"] else "PASS"
    parts = [f"{record['artifact']}  {record['precision']}  {verdict}", f"max|diff|/max|ref| {m['max_rel']:.2e}",
             f"rel-L2 {m['rel_l2']:.2e}", f"cosine {m['cosine']:.6f}"]
    if m["top1_agreement"] is not None:
        parts.append(f"top-1 agree {m['top1_agreement']:.2%}  top-5 overlap {m['top5_overlap']:.2%}")
    if record.get("accuracy"):
        accuracy = record["accuracy"]
        low, high = accuracy["top1_interval"]
        parts.append(f"top-1 {accuracy['top1']:.2%} (95% {low:.1%}–{high:.1%}) top-5 {accuracy['top5']:.2%}, "
                     f"{accuracy['share_of_reference']:.2%} of the reference's {m['accuracy_reference']:.2%}")
    text = "  ".join(parts)
    kernel = record.get("kernel")
    if kernel:
        text += (f"\n    kernel check {'PASS' if kernel['ok'] else 'FAIL'}: rel-L2 {kernel['metrics']['rel_l2']:.2e} "
                 "from the file's exact Q/DQ math")
    if record["failures"]:
        text += "\n    out of bounds: " + "; ".join(record["failures"])
    layers = record.get("layers")
    if layers and layers["first_divergence"]:
        first = layers["first_divergence"]
        text += (f"\n    first layer above rel-L2 {layers['bound']:g}: {first['node']} ({first['op']}) "
                 f"rel-L2 {first['rel_l2']:.2e}")
    if layers and layers["largest_jump"]:
        jump = layers["largest_jump"]
        text += f"\n    largest jump: {jump['node']} ({jump['op']}) rel-L2 {jump['rel_l2']:.2e}"
    return text


def run(args: argparse.Namespace) -> int:
    with open_reference(args.reference) as reference:
        data = _data(args, reference)
        inputs = data.all()
        stdout.print(f"reference: {reference.describe()}\ndata: {data.description}\ncpu: {this_cpu().describe()}")
        reference_outputs = reference.run_batched({reference.inputs[0].name: inputs}, batch=32)
        if data.labels is not None and (scores := next(iter(reference_outputs.values()))).ndim == 2:
            stdout.print(f"reference accuracy: {score(scores, data.labels).describe()}")
        records, calibrations = [], []
        for target in args.candidates:
            with open_session(target, args.backend, self_check=False) as candidate:
                record = compare_candidate(reference, reference_outputs, candidate, inputs, data.labels, args)
                calibration = _calibration_file(candidate)
            if calibration is not None and calibration not in calibrations:
                calibrations.append(calibration)
            stdout.print(describe(record))
            records.append(record)
    if args.json is not None:
        report = {"reference": reference.target.label, "data": data.description, "cpu": this_cpu().as_record(),
                  "reference_accuracy": records[0].get("reference_accuracy") if records else None,
                  "candidates": [{k: v for k, v in r.items() if k not in ("outputs", "reference_accuracy")}
                                 for r in records]}
        with atomic_write(args.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if args.report is not None:
        from onebyone.runtime.parity.report import write_report

        write_report(args.report, reference.target.label, data.description, this_cpu().describe(), records,
                     reference_outputs, calibrations)
        stdout.print(f"report: {args.report}")
    failed = [r["artifact"] for r in records if r["failures"]]
    if failed:
        raise CheckFailed(f"{', '.join(failed)} out of bounds (above)")
    return 0


def _calibration_file(candidate: Session) -> Path | None:
    """The calib.json a bundle's quantized artifact was made with, when it is still there."""
    record = candidate.target.record
    name = (record.made_by.get("calibration") or {}).get("file") if record is not None else None
    path = candidate.target.bundle / name if name else None
    return path if path is not None and path.is_file() else None
