"""Constant folding and dead-code removal, by onnxscript's and onnx-ir's own passes."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes.common import IdentityEliminationPass, RemoveUnusedNodesPass, TopologicalSortPass

from onebyone.optimize.graph import op_counts
from onebyone.optimize.passes.base import GraphPass
from onebyone.runtime.bundle.onnx_file import fold_constants


class Cleanup(GraphPass):
    """Changes no value the graph computes, only how: nodes whose inputs are all constant are replaced by their
    results (`fold_constants`: onnxscript's constant folding, which also turns inference-mode Dropout into its
    input, and small ConstantOfShape fills), y = Identity(x) reads x directly, nodes and initializers nothing reads
    are removed, nodes are sorted topologically."""

    name = "cleanup"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = (op_counts(model.graph), len(model.graph.initializers))
        fold_constants(model)
        ir.passes.Sequential(IdentityEliminationPass(), RemoveUnusedNodesPass(), TopologicalSortPass())(model)
        return ir.passes.PassResult(model, (op_counts(model.graph), len(model.graph.initializers)) != before)

