"""Property: any chain or branching of Conv/BN/Relu/1x1/Mul/Add, optimized for any target, computes the same outputs
and is a valid ONNX file (onnx.checker, full check) that optimizes again to the same outputs."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from onebyone.optimize.pipeline import run_passes, select_passes
from onebyone.optimize.targets import TARGETS
from onebyone.optimize.verify import random_inputs, run_model
from onebyone.runtime.bundle.onnx_file import validity_problem
from tests.graphs import bn_node, bn_params, model, tensor_input

LAYERS = ("conv", "pointwise", "depthwise", "bn", "relu", "mul", "add", "siblings", "residual")


class Builder:
    """Appends layers to an ONNX graph under construction, tracking the current tensor and its channel count."""

    def __init__(self, seed: int, channels: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.init: dict[str, np.ndarray] = {}
        self.current, self.channels = "x", channels

    def name(self, kind: str) -> str:
        return f"{kind}{len(self.nodes)}"

    def conv(self, x: str, channels_out: int, kernel: int, groups: int = 1, bias: bool = True) -> str:
        name = self.name("conv")
        self.init[f"{name}.W"] = self.rng.normal(0, 0.5, (channels_out, self.channels // groups, kernel, kernel))
        inputs = [x, f"{name}.W"]
        if bias:
            self.init[f"{name}.B"] = self.rng.normal(0, 0.5, channels_out)
            inputs.append(f"{name}.B")
        self.nodes.append(helper.make_node("Conv", inputs, [name], name=name, group=groups,
                                           pads=[kernel // 2] * 4))
        return name

    def elementwise(self, op: str, const: np.ndarray) -> None:
        name = self.name(op.lower())
        self.init[f"{name}.c"] = const
        self.nodes.append(helper.make_node(op, [self.current, f"{name}.c"], [name], name=name))
        self.current = name

    def add_layer(self, kind: str, width: int, flag: bool) -> None:
        c = self.channels
        if kind in ("conv", "pointwise"):
            self.current, self.channels = self.conv(self.current, width, 3 if kind == "conv" else 1, bias=flag), width
        elif kind == "depthwise":
            self.current = self.conv(self.current, c, 3, groups=c, bias=flag)
        elif kind == "bn":
            name = self.name("bn")
            self.init |= bn_params(name, c, self.rng)
            self.nodes.append(bn_node(self.current, name, name))
            self.current = name
        elif kind == "relu":
            name = self.name("relu")
            self.nodes.append(helper.make_node("Relu", [self.current], [name]))
            self.current = name
        elif kind == "mul":
            self.elementwise("Mul", self.rng.uniform(-2, 2, (1, c, 1, 1) if flag else ()))
        elif kind == "add":
            self.elementwise("Add", self.rng.normal(0, 1, (c, 1, 1) if flag else ()))
        elif kind == "siblings":  # two or three 1x1 branches, summed: the shape of an Inception or stage entry
            branches = [self.conv(self.current, width, 1, bias=flag) for _ in range(3 if flag else 2)]
            total = branches[0]
            for branch in branches[1:]:
                name = self.name("sum")
                self.nodes.append(helper.make_node("Add", [total, branch], [name]))
                total = name
            self.current, self.channels = total, width
        else:  # residual: x + BN(Conv3x3(x))
            body = self.conv(self.current, c, 3, bias=flag)
            name = self.name("bn")
            self.init |= bn_params(name, c, self.rng)
            self.nodes.append(bn_node(body, name, name))
            total = self.name("residual")
            self.nodes.append(helper.make_node("Add", [self.current, name], [total]))
            self.current = total


# Random compositions cancel (residual sums, Relu, constants of either sign), so an output can be much smaller than
# the intermediates whose float32 rounding a rewrite reorders: these graphs get the FP32 export tolerance, 1e-4 of the
# output scale, rather than --verify's 1e-5. A wrong rewrite is off by O(1), so this still catches every algebra bug.
PROPERTY_REL_TOL = 1e-4

layer = st.tuples(st.sampled_from(LAYERS), st.integers(1, 6), st.booleans())


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), channels=st.integers(1, 5), layers=st.lists(layer, min_size=1, max_size=7))
def test_every_target_preserves_outputs(seed, channels, layers):
    builder = Builder(seed, channels)
    for kind, width, flag in layers:
        builder.add_layer(kind, width, flag)
    if builder.current == "x":
        builder.add_layer("relu", 0, False)
    original = model(builder.nodes, [tensor_input("x", ["N", channels, 6, 6])], [builder.current], builder.init)
    inputs = random_inputs(original.graph, np.random.default_rng(seed))
    before = next(iter(run_model(original, inputs).values()))
    for target in TARGETS:
        optimized = ir.from_proto(ir.to_proto(original))  # a deep copy; copy.deepcopy breaks IR graphs
        run_passes(optimized, select_passes(target, None))
        after = next(iter(run_model(optimized, inputs).values()))
        assert after.shape == before.shape and np.isfinite(after).all()
        error = np.abs(after - before).max() / max(np.abs(before).max(), 1e-30)
        assert error <= PROPERTY_REL_TOL, f"target {target}: relative error {error:.2e}"
        assert validity_problem(optimized) is None, f"target {target}: {validity_problem(optimized)}"
        run_passes(optimized, select_passes(target, None))
        again = next(iter(run_model(optimized, inputs).values()))
        assert np.abs(again - before).max() / max(np.abs(before).max(), 1e-30) <= PROPERTY_REL_TOL
        assert validity_problem(optimized) is None, f"target {target}, optimized twice: {validity_problem(optimized)}"
