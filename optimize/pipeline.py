"""Running graph passes in order, with a report per pass and optional numerical verification after each."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import onnx_ir as ir

from onebyone.optimize.graph import op_counts
from onebyone.optimize.passes.base import GraphPass, Refusal
from onebyone.optimize.targets import PASSES, TARGETS, pass_class
from onebyone.optimize.verify import Verifier
from onebyone.runtime.bundle.onnx_file import validity_problem
from onebyone.runtime.core.errors import CheckFailed, UserError


@dataclasses.dataclass
class PassReport:
    name: str
    changed: bool
    seconds: float
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    refusals: list[Refusal]
    verification: dict[str, Any] | None = None


def select_passes(target: str, names: list[str] | None) -> list[GraphPass]:
    """The passes to run: `names` in the order given, else the target's default list."""
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r}; valid targets: {', '.join(TARGETS)}")
    chosen = names if names is not None else list(TARGETS[target])
    unknown = [name for name in chosen if name not in PASSES]
    if unknown or not chosen:
        raise UserError(f"unknown pass(es) {', '.join(unknown) or '(none given)'}; valid passes: {', '.join(PASSES)}")
    return [pass_class(name)() for name in chosen]


def run_passes(model: ir.Model, passes: list[GraphPass], verifier: Verifier | None = None) -> list[PassReport]:
    """Apply `passes` in place, in order. With a verifier, each pass that changed the graph must leave it valid ONNX
    (onnx.checker's full check) and ORT runs before and after it on the same inputs: the first pass that breaks either
    raises CheckFailed naming it."""
    reports = []
    reference = verifier.outputs(model) if verifier else None
    for graph_pass in passes:
        ops_before = op_counts(model.graph)
        started = time.perf_counter()
        changed = graph_pass(model).modified
        report = PassReport(name=graph_pass.name, changed=changed, seconds=time.perf_counter() - started,
                            ops_before=ops_before, ops_after=op_counts(model.graph), refusals=graph_pass.refusals)
        if verifier is not None and reference is not None and changed:
            if (problem := validity_problem(model)) is not None:
                raise CheckFailed(f"pass {graph_pass.name!r} made the graph invalid ONNX (onnx.checker: {problem}); "
                                  "nothing was written")
            parity = verifier.compare(reference, model)
            report.verification = parity.as_record() | {"seed": verifier.seed}
            if not parity.ok:
                raise CheckFailed(f"pass {graph_pass.name!r} changed the outputs: {parity.describe()} "
                                  f"(inputs seed {verifier.seed}); nothing was written")
        reports.append(report)
    return reports
