"""The base of every onebyone graph pass."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

import onnx_ir as ir


@dataclasses.dataclass(frozen=True)
class Refusal:
    """A rewrite the pass could not prove safe, so did not make."""

    node: str
    reason: str


class GraphPass(ir.passes.InPlacePass):
    """An in-place onnx-ir pass with a name (as used by `--passes`) and a list of refused rewrites."""

    name: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.refusals: list[Refusal] = []

    def refuse(self, node: ir.Node, reason: str) -> None:
        """Record a refused rewrite once, however often a pass that iterates to a fixed point meets it."""
        refusal = Refusal(node=node.name or node.op_type, reason=reason)
        if refusal not in self.refusals:
            self.refusals.append(refusal)

    @staticmethod
    def rewrite_each(model: ir.Model, op_types: tuple[str, ...], rewrite: Callable[[ir.Node], bool]) -> bool:
        """Offer every standard-domain node of `op_types` to `rewrite`, in graph order, skipping nodes an earlier
        rewrite removed; True when any rewrite changed the graph."""
        graph = model.graph
        changed = False
        for node in [n for n in graph if n.op_type in op_types and n.domain == ""]:
            if node.graph is graph:
                changed |= rewrite(node)
        return changed
