"""Constant folding and dead-code removal, by onnxscript's and onnx-ir's own passes."""

from __future__ import annotations

import onnx_ir as ir
import onnxscript.optimizer
from onnx_ir.passes.common import IdentityEliminationPass, RemoveUnusedNodesPass, TopologicalSortPass

from onebyone.optimize.graph import op_counts
from onebyone.optimize.passes.base import GraphPass


class Cleanup(GraphPass):
    """Changes no value the graph computes, only how: nodes whose inputs are all constant are replaced by their
    results (onnxscript constant folding, which also turns inference-mode Dropout into its input), y = Identity(x)
    reads x directly, nodes and initializers nothing reads are removed, nodes are sorted topologically."""

    name = "cleanup"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = (op_counts(model.graph), len(model.graph.initializers))
        onnxscript.optimizer.fold_constants(model)
        ir.passes.Sequential(IdentityEliminationPass(), RemoveUnusedNodesPass(), TopologicalSortPass())(model)
        return ir.passes.PassResult(model, (op_counts(model.graph), len(model.graph.initializers)) != before)
