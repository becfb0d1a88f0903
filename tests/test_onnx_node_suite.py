"""Peer suite: ONNX's own backend node tests for the ops the passes rewrite still match their expected outputs after
`optimize`, for every target — as shipped (weights are graph inputs) and with the weights made initializers, so
that the passes actually rewrite them."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper
from onnx.backend.test.loader import load_model_tests

from onebyone.optimize.pipeline import run_passes, select_passes
from onebyone.optimize.targets import TARGETS
from onebyone.runtime.bundle.golden import reference_session, run_session

OPS = {"conv": "Conv", "convtranspose": "ConvTranspose", "batchnorm": "BatchNormalization", "relu": "Relu",
       "add": "Add", "gemm": "Gemm", "matmul": "MatMul"}


def node_cases() -> list:
    """The node tests named after one of OPS (test_conv_*, test_gemm_*, ...) whose graph holds that op."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    chosen = []
    for case in cases:
        stem = case.name.removeprefix("test_")
        op = next((op for prefix, op in OPS.items() if stem == prefix or stem.startswith(f"{prefix}_")), None)
        if op is not None and any(node.op_type == op for node in case.model.graph.node):
            chosen.append(case)
    return chosen


CASES = node_cases()


def with_constant_weights(proto: onnx.ModelProto, inputs: list[np.ndarray]) -> tuple[onnx.ModelProto, list]:
    """The model with every input after the first turned into an initializer holding the test's value."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    graph = proto.graph
    for value_info, array in zip(list(graph.input[1:]), inputs[1:], strict=True):
        graph.initializer.append(numpy_helper.from_array(array, value_info.name))
        graph.input.remove(value_info)
    return proto, inputs[:1]


def run(proto: onnx.ModelProto, inputs: list[np.ndarray]) -> list[np.ndarray]:
    session = reference_session(proto.SerializeToString())
    names = [value.name for value in session.get_inputs()]
    outputs = run_session(session, dict(zip(names, inputs, strict=True)))
    return [outputs[value.name] for value in session.get_outputs()]


def test_the_suite_covers_every_rewritten_op():
    covered = {node.op_type for case in CASES for node in case.model.graph.node}
    assert covered >= set(OPS.values()) and len(CASES) >= 40


@pytest.mark.parametrize("weights", ["inputs", "initializers"])
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_node_case_matches_expected_after_optimize(case, weights):
    inputs, expected = case.data_sets[0]
    proto = case.model
    if weights == "initializers":
        if len(inputs) < 2:
            pytest.skip("a single input: nothing to make constant")
        proto, inputs = with_constant_weights(proto, inputs)
    np.testing.assert_allclose(run(proto, inputs)[0], expected[0], rtol=case.rtol, atol=case.atol,
                               err_msg="ONNX Runtime on the unoptimized model")
    for target in TARGETS:
        model = ir.from_proto(proto)
        run_passes(model, select_passes(target, None))
        outputs = run(ir.to_proto(model), inputs)
        assert len(outputs) == len(expected)
        for got, want in zip(outputs, expected, strict=True):
            assert got.shape == want.shape, target
            np.testing.assert_allclose(got, want, rtol=case.rtol, atol=case.atol, err_msg=f"target {target}")
