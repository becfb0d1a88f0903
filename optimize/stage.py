"""The optimize stage: an ONNX file in, the same function out after the target's graph passes, checked against the
bundle's golden outputs and recorded in its manifest. `onebyone optimize` and `onebyone.optimize()` are shells over
`optimize()` here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from onebyone.optimize.artifact import write_artifact
from onebyone.optimize.pipeline import PassReport, run_passes, select_passes
from onebyone.optimize.targets import DEFAULT_TARGET
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.preflight.operators import DEFAULT as DEFAULT_TENSORRT


@dataclasses.dataclass(frozen=True)
class OptimizeOptions:
    """What to run. The defaults are the CLI's (`onebyone optimize --help`)."""

    output: Path | None = None  # default: INPUT.opt.onnx
    target: str = DEFAULT_TARGET  # deployment target (optimize/targets.py TARGETS): its list of passes
    passes: tuple[str, ...] | None = None  # these passes, in this order, instead of the target's
    verify: bool = False  # ONNX Runtime before/after every pass on fresh random inputs; fail on a mismatch
    report: Path | None = None  # write the per-pass report as JSON here


@dataclasses.dataclass
class OptimizeResult:
    """What `optimize()` wrote and what each pass did."""

    output: Path
    summary: str  # the golden check's verdict line (or "written (not in a bundle …)")
    passes: list[PassReport]
    record: dict[str, Any]  # what the manifest records as made_by


def default_output(source: Path) -> Path:
    return source.with_name(source.name.removesuffix(".onnx") + ".opt.onnx")


def optimize(source: Path, options: OptimizeOptions) -> OptimizeResult:
    from onebyone.optimize.verify import Verifier
    from onebyone.runtime.bundle.onnx_file import load_model

    passes = select_passes(options.target, list(options.passes) if options.passes is not None else None)
    model = load_model(source)
    if options.target == "trt" and any(node.domain == "com.microsoft" for node in model.graph):
        raise UserError(f"{source} holds ONNX Runtime contrib ops (com.microsoft: `optimize --target ort`, ORT's "
                        "offline optimizer), which TensorRT cannot parse; optimize the export (model.onnx) for "
                        "TensorRT")
    output = options.output or default_output(source)
    reports = run_passes(model, passes, Verifier(model) if options.verify else None)
    made_by = {"stage": "optimize", "from": source.name, "target": options.target,
               "passes": [report.name for report in reports]}
    summary = write_artifact(model, source, output, "fp32", TOLERANCES["fp32"], made_by,
                             tensorrt=DEFAULT_TENSORRT if options.target == "trt" else ())
    if options.report:
        with atomic_write(options.report) as tmp:
            tmp.write_text(json.dumps({"input": str(source), "output": str(output), "target": options.target,
                                       "passes": [dataclasses.asdict(r) for r in reports]}, indent=2) + "\n")
    return OptimizeResult(output, summary, reports, made_by)
