"""Parity: every candidate against the reference on the same data — output metrics against per-precision bounds, and
for ONNX candidates the per-layer error with the first layer that diverges. `onebyone parity` and
`onebyone.stages.parity` are shells over `parity()` here.

The reference is the torch model (a zoo name, package.module:factory, or a bundle directory: the model it was
exported from) or an FP32 ONNX. INT8 ONNX candidates also get the kernel check (runtime/parity/kernel_check.py):
the same outputs against the file's exact Q/DQ math.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.bundle.accuracy import Accuracy, score
from onebyone.runtime.bundle.labelled import LABELLED_NAME, LabelledSet
from onebyone.runtime.bundle.preprocess import resized
from onebyone.runtime.bundle.sources import DataSource, open_source
from onebyone.runtime.bundle.tensors import DYNAMIC
from onebyone.runtime.bundle.tolerances import TOLERANCES, Tolerance
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.parity.kernel_check import check_kernels
from onebyone.runtime.parity.metrics import compare
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.opening import open as open_session

LAYER_SAMPLES = 32  # per-layer localisation runs on the first samples only
RANDOM_SAMPLES = 16  # `random` data when `samples` is not given


@dataclasses.dataclass(frozen=True)
class ParityOptions:
    """What to compare on and against which bounds. The defaults are the CLI's (`onebyone parity --help`)."""

    data: str | None = None  # a data source; plain `digits` is digits-test. Default: the bundle's labelled data
    samples: int | None = None  # at most this many samples
    json: Path | None = None  # write every metric and layer as JSON here
    report: Path | None = None  # write a self-contained HTML report here
    max_rel: float | None = None  # override max|diff|/max|ref| for every candidate
    min_cosine: float | None = None  # override the cosine-similarity bound
    min_top1: float | None = None  # override the top-1 agreement bound (0..1)
    layers: bool = True  # per-layer localisation of ONNX candidates
    backend: str = "auto"  # the engine that runs the candidates


@dataclasses.dataclass
class ParityResult:
    """Every candidate's record (metrics, bounds, failures, accuracy, kernel check, layers) beside the reference's."""

    reference: str  # what the reference session describes itself as
    data: str
    cpu: str
    reference_accuracy: Accuracy | None  # against the data's labels, when it has them
    candidates: list[dict[str, Any]]

    @property
    def failed(self) -> list[str]:
        return [record["artifact"] for record in self.candidates if record["failures"]]

    def describe(self) -> str:
        """The reference, the data, the CPU, then a paragraph per candidate (`onebyone parity` prints it)."""
        lines = [f"reference: {self.reference}", f"data: {self.data}", f"cpu: {self.cpu}"]
        if self.reference_accuracy is not None:
            lines.append(f"reference accuracy: {self.reference_accuracy.describe()}")
        return "\n".join(lines + [describe_candidate(record) for record in self.candidates])


def parity(reference_target: str, candidate_targets: list[str], options: ParityOptions) -> ParityResult:
    with open_reference(reference_target) as reference:
        data = _data(options, reference)
        inputs = data.all()
        dense = reference.model.task == "segmentation"
        sizes = _other_sizes(reference)
        reference_outputs = run_at_sizes(reference, inputs, sizes)
        reference_accuracy = None
        if data.labels is not None and (scores := next(iter(reference_outputs.values()))).ndim == 2:
            reference_accuracy = score(scores, data.labels)
        records, calibrations = [], []
        for target in candidate_targets:
            with open_session(target, options.backend, self_check=False) as candidate:
                records.append(compare_candidate(reference, reference_outputs, candidate, inputs, data.labels,
                                                 options, sizes, dense))
                calibration = _calibration_file(candidate)
            if calibration is not None and calibration not in calibrations:
                calibrations.append(calibration)
        label, described = reference.target.label, reference.describe()
    if options.json is not None:
        report = {"reference": label, "data": data.description, "cpu": this_cpu().as_record(),
                  "reference_accuracy": records[0].get("reference_accuracy") if records else None,
                  "candidates": [{k: v for k, v in r.items() if k not in ("outputs", "reference_accuracy")}
                                 for r in records]}
        with atomic_write(options.json) as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")
    if options.report is not None:
        from onebyone.runtime.parity.report import write_report

        write_report(options.report, label, data.description, this_cpu().describe(), records,
                     {name: values for name, values in reference_outputs.items() if "@" not in name}, calibrations)
    return ParityResult(described, data.description, this_cpu().describe(), reference_accuracy, records)


def _other_sizes(reference: Session) -> list[tuple[int, int]]:
    """The H×W besides its own that the reference's bundle was exported and checked at (a dynamic H×W), else []."""
    manifest = reference.target.manifest
    shapes = (manifest.model.checked_shapes or []) if manifest is not None else []
    return [(shape[2], shape[3]) for shape in shapes[1:] if len(shape) == 4]


def run_at_sizes(session: Session, inputs: np.ndarray, sizes: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The session's outputs on `inputs`, and on the same inputs resized to each of `sizes` that the session takes
    (its height and width dynamic), those keyed NAME@CxHxW: parity per output and per resolution."""
    name = session.inputs[0].name
    outputs = session.run_batched({name: inputs}, batch=32)
    if sizes and all(dim == DYNAMIC for dim in session.inputs[0].shape[2:]):
        for height, width in sizes:
            at = session.run_batched({name: resized(inputs, (height, width))}, batch=32)
            outputs |= {f"{output}@{inputs.shape[1]}x{height}x{width}": values for output, values in at.items()}
    return outputs


def open_reference(target: str) -> Session:
    backend = "torch" if Path(target).is_dir() else "auto"
    return open_session(target, backend, self_check=False)


def _data(options: ParityOptions, reference: Session) -> DataSource:
    """`data` (plain `digits`: the held-out test split), else the bundle's labelled data, else `random`."""
    bundle = reference.target.bundle
    if options.data is None and bundle is not None and (bundle / LABELLED_NAME).is_file():
        labelled = LabelledSet.load(bundle / LABELLED_NAME)
        count = options.samples or len(labelled.labels)
        return DataSource.of_arrays(labelled.description, labelled.inputs[:count], labelled.labels[:count])
    spec = reference.inputs[0]
    manifest = reference.target.manifest
    return open_source(options.data or "random", tuple(None if d < 0 else d for d in spec.shape[1:]),
                       reference.model.preprocess, options.samples, spec.name, digits="digits-test",
                       random_samples=RANDOM_SAMPLES,
                       nominal=tuple(manifest.model.input_shape) if manifest is not None else None)


def check_compatible(reference: Session, candidate: Session) -> None:
    """Same input and output names, and the same non-batch dimensions."""
    def signature(specs: list) -> list[tuple[str, tuple[int, ...]]]:
        return [(s.name, tuple(s.shape[1:])) for s in specs]

    for kind in ("inputs", "outputs"):
        ref, got = signature(getattr(reference, kind)), signature(getattr(candidate, kind))
        if ref != got:
            raise UserError(f"{candidate.target.label} has {kind} {got}, the reference has {ref}; parity compares "
                            "the same model in another form")


def tolerance_for(precision: str, options: ParityOptions) -> Tolerance:
    """The precision's row of the tolerance table, with the bounds the options give instead."""
    given = {"max_rel": options.max_rel, "min_cosine": options.min_cosine, "min_top1": options.min_top1}
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
                      labels: np.ndarray | None, options: ParityOptions, sizes: list[tuple[int, int]] = (),
                      dense: bool = False) -> dict[str, Any]:
    """One candidate against the reference's outputs: on `inputs`, and at each of `sizes` it takes."""
    from onebyone.runtime.parity.layers import localise

    check_compatible(reference, candidate)
    outputs = run_at_sizes(candidate, inputs, list(sizes))
    precision = _precision(candidate)
    parity = compare({name: values for name, values in reference_outputs.items() if name in outputs}, outputs,
                     tolerance_for(precision, options), labels, dense)
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
    fp32 = _fp32_graph(reference, candidate) if options.layers and in_file else None
    if fp32 is not None:
        record["layers"] = localise(fp32, candidate.target.path, inputs[:LAYER_SAMPLES], precision).as_record()
    return record


def _calibration_file(candidate: Session) -> Path | None:
    """The calib.json a bundle's quantized artifact was made with, when it is still there."""
    record = candidate.target.record
    name = (record.made_by.get("calibration") or {}).get("file") if record is not None else None
    path = candidate.target.bundle / name if name else None
    return path if path is not None and path.is_file() else None


def describe_candidate(record: dict[str, Any]) -> str:
    """One candidate's verdict, metrics, accuracy, kernel check, failures and first diverging layers."""
    m = record["metrics"]
    verdict = "FAIL" if record["failures"] else "PASS"
    parts = [f"{record['artifact']}  {record['precision']}  {verdict}", f"max|diff|/max|ref| {m['max_rel']:.2e}",
             f"rel-L2 {m['rel_l2']:.2e}", f"cosine {m['cosine']:.6f}"]
    if m["top1_agreement"] is not None:
        parts.append(f"top-1 agree {m['top1_agreement']:.2%}  top-5 overlap {m['top5_overlap']:.2%}")
    if m["pixel_agreement"] is not None:
        parts.append(f"pixel argmax agree {m['pixel_agreement']:.2%}")
    if m["miou_candidate"] is not None:
        parts.append(f"mIoU {m['miou_candidate']:.2%} (reference {m['miou_reference']:.2%})")
    if record.get("accuracy"):
        accuracy = record["accuracy"]
        low, high = accuracy["top1_interval"]
        parts.append(f"top-1 {accuracy['top1']:.2%} (95% {low:.1%}–{high:.1%}) top-5 {accuracy['top5']:.2%}, "
                     f"{accuracy['share_of_reference']:.2%} of the reference's {m['accuracy_reference']:.2%}")
    text = "  ".join(parts)
    if len(m["outputs"]) > 1:  # each output, and each at every other size
        for name, out in m["outputs"].items():
            agree = f"  pixel argmax agree {out['pixel_agreement']:.2%}" if out["pixel_agreement"] is not None else ""
            text += (f"\n    {name}: max|diff|/max|ref| {out['max_rel']:.2e}  rel-L2 {out['rel_l2']:.2e}  "
                     f"cosine {out['cosine']:.6f}{agree}")
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
