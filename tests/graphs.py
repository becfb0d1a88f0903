"""Building small ONNX test graphs, and checking a pass against ONNX Runtime before and after."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from onebyone.optimize.passes.base import GraphPass
from onebyone.optimize.verify import random_inputs, run_model

REL_TOL = 1e-5  # FP32 rewrites: max|after − before| ≤ 1e-5 · max|before|


def tensor_input(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def model(nodes: list[onnx.NodeProto], inputs: list[onnx.ValueInfoProto], outputs: list[str],
          initializers: dict[str, np.ndarray], opset: int = 18) -> ir.Model:
    graph = helper.make_graph(nodes, "fixture", inputs, [helper.make_tensor_value_info(o, TensorProto.FLOAT, None)
                                                         for o in outputs],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in initializers.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    proto = onnx.shape_inference.infer_shapes(proto)
    onnx.checker.check_model(proto)
    return ir.from_proto(proto)


def bn_params(prefix: str, channels: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """γ, β, μ, σ² with non-trivial values (σ² > 0)."""
    return {f"{prefix}.gamma": rng.uniform(0.5, 1.5, channels), f"{prefix}.beta": rng.normal(0, 0.5, channels),
            f"{prefix}.mean": rng.normal(0, 0.5, channels), f"{prefix}.var": rng.uniform(0.2, 2.0, channels)}


def bn_node(x: str, y: str, prefix: str, **attributes: object) -> onnx.NodeProto:
    return helper.make_node("BatchNormalization", [x, f"{prefix}.gamma", f"{prefix}.beta", f"{prefix}.mean",
                                                   f"{prefix}.var"], [y], name=prefix, **attributes)


def ops(m: ir.Model) -> list[str]:
    return [node.op_type for node in m.graph]


def apply_and_compare(m: ir.Model, graph_pass: GraphPass, rng: np.random.Generator) -> tuple[bool, float]:
    """Run the pass in place; return (changed, relative max error of the outputs) on fresh random inputs."""
    inputs = random_inputs(m.graph, rng)
    before = run_model(m, inputs)
    changed = graph_pass(m).modified
    after = run_model(m, inputs)
    assert set(after) == set(before), "graph outputs changed names"
    error = max(float(np.abs(after[k] - before[k]).max()) for k in before)
    scale = max(float(np.abs(before[k]).max()) for k in before)
    for k in before:
        assert after[k].shape == before[k].shape and np.isfinite(after[k]).all()
    return changed, error / scale
