"""Fold per-channel constant Mul/Add/Sub/Div into the Conv before them (always exact) or after them (where exact)."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import (
    constant,
    constant_weights,
    drop_if_unused,
    set_constant_input,
    single_consumer,
    sole_reader,
    take_over,
)
from onebyone.optimize.passes.base import GraphPass

ARITHMETIC = ("Mul", "Add", "Sub", "Div")


@dataclasses.dataclass(frozen=True)
class Affine:
    """z = a ⊙ x + c per channel; `a` and `c` hold one value per channel (or one for all)."""

    data: ir.Value
    a: np.ndarray
    c: np.ndarray

    def per_channel(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        return np.broadcast_to(self.a, (channels,)), np.broadcast_to(self.c, (channels,))


def channel_vector(const: np.ndarray, rank: int) -> np.ndarray | str:
    """The constant as one value per channel (axis 1 of a rank-`rank` tensor), or why it is not per-channel."""
    if const.ndim > rank:
        return f"constant of rank {const.ndim} broadcasts the rank-{rank} activation up"
    aligned = const.reshape((1,) * (rank - const.ndim) + const.shape)
    varying = [axis for axis, size in enumerate(aligned.shape) if size != 1 and axis != 1]
    if varying:
        return f"constant varies along axis {varying[0]}: not per-channel"
    return aligned.reshape(-1).astype(np.float64)


class FoldAffine(GraphPass):
    """A per-channel affine node z = a ⊙ x + c — Mul (a = s), Add (c = t), Sub (x − t: c = −t; t − x: a = −1,
    c = t), Div (x / s: a = 1/s) with a constant s or t that varies at most along the channel axis — is folded:

    - after a Conv y = W∗x + b (output read only by the node):  W'[o] = a[o]·W[o],  b' = a ⊙ b + c;
    - else before a Conv reading z (z read only by that Conv):  W'[o, j] = W[o, j]·a[i(o, j)],
      b'[o] = b[o] + Σ_{j,k} W[o, j, k]·c[i(o, j)], where i(o, j) = group(o)·C_in/g + j is the input channel.
      The shift term is exact only without padding: a zero-padded border would see 0, not c. So an additive
      constant before a padded Conv is refused.

    The folded Conv's output takes the node's output name when the node came after it.
    """

    name = "fold_affine"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        changed = False
        while self.rewrite_each(model, ARITHMETIC, lambda node: self._fold(model.graph, node)):
            changed = True  # a Conv followed by Mul then Add folds the Mul first, then the Add
        return ir.passes.PassResult(model, changed)

    def _fold(self, graph: ir.Graph, node: ir.Node) -> bool:
        affine = self._affine(node)
        if affine is None:
            return False
        producer = affine.data.producer()
        after_conv = producer is not None and _is_foldable_conv(producer)
        if after_conv and single_consumer(affine.data, node):
            self._fold_after(graph, producer, node, affine)
            return True
        consumer = _sole_conv_reader(node.outputs[0])
        if consumer is None:
            self.refuse(node, f"the output of Conv {producer.name!r} has other readers: folding would change them")
            return False
        if reason := self._fold_before(graph, node, consumer, affine):
            self.refuse(node, reason)
            return False
        consumer.replace_input_with(0, affine.data)
        constants = [value for value in node.inputs if value is not affine.data]
        graph.remove(node, safe=True)
        for value in constants:
            drop_if_unused(graph, value)
        return True

    def _affine(self, node: ir.Node) -> Affine | None:
        """The node as a per-channel affine map of its one non-constant input, or None (refusing when relevant)."""
        if len(node.inputs) != 2 or node.outputs[0].dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16,
                                                                   ir.DataType.DOUBLE):
            return None
        consts = [constant(v) for v in node.inputs]
        if (consts[0] is None) == (consts[1] is None):
            return None
        data_index = 0 if consts[0] is None else 1
        data, const = node.inputs[data_index], consts[1 - data_index]
        if node.op_type == "Div" and data_index == 1:
            return None  # s / x is not affine in x
        if not _touches_conv(data, node):
            return None
        if data.shape is None:
            self.refuse(node, "activation rank unknown: run shape inference")
            return None
        vector = channel_vector(const, len(data.shape))
        if isinstance(vector, str):
            self.refuse(node, vector)
            return None
        one, zero = np.ones_like(vector), np.zeros_like(vector)
        if node.op_type == "Mul":
            return Affine(data, vector, zero)
        if node.op_type == "Div":
            if (vector == 0).any():
                self.refuse(node, "division by a constant containing 0")
                return None
            return Affine(data, 1 / vector, zero)
        if node.op_type == "Add":
            return Affine(data, one, vector)
        return Affine(data, one, -vector) if data_index == 0 else Affine(data, -one, vector)

    @staticmethod
    def _fold_after(graph: ir.Graph, conv: ir.Node, node: ir.Node, affine: Affine) -> None:
        weight = constant(conv.inputs[1])
        bias = constant_weights(conv)[1]
        a, c = affine.per_channel(weight.shape[0])
        base = conv.name or "Conv"
        set_constant_input(graph, conv, 1, (weight * a.reshape(-1, *[1] * (weight.ndim - 1))).astype(weight.dtype),
                           f"{base}.weight_affine")
        set_constant_input(graph, conv, 2, (a * bias + c).astype(weight.dtype), f"{base}.bias_affine")
        take_over(graph, node, conv.outputs[0])

    @staticmethod
    def _fold_before(graph: ir.Graph, node: ir.Node, conv: ir.Node, affine: Affine) -> str | None:
        """Rewrite `conv` to read `affine.data` directly; return why not, when it cannot."""
        weight = constant(conv.inputs[1])
        groups = conv.attributes.get_int("group", 1)
        channels_in = weight.shape[1] * groups
        a, c = affine.per_channel(channels_in)
        if c.any() and _padded(conv):
            return f"an additive constant before the zero-padded Conv {conv.name!r} is not exact at its borders"
        out_per_group = weight.shape[0] // groups
        group_of = np.arange(weight.shape[0]) // out_per_group
        channel = group_of[:, None] * weight.shape[1] + np.arange(weight.shape[1])[None, :]  # i(o, j)
        spatial = (1,) * (weight.ndim - 2)
        w = weight.astype(np.float64)
        new_weight = w * a[channel].reshape(*channel.shape, *spatial)
        shift = (w * c[channel].reshape(*channel.shape, *spatial)).reshape(weight.shape[0], -1).sum(axis=1)
        base = conv.name or "Conv"
        set_constant_input(graph, conv, 1, new_weight.astype(weight.dtype), f"{base}.weight_affine")
        set_constant_input(graph, conv, 2, (constant_weights(conv)[1] + shift).astype(weight.dtype),
                           f"{base}.bias_affine")
        return None


def _is_foldable_conv(node: ir.Node) -> bool:
    """A standard Conv whose weight (and bias, if any) are constants."""
    return node.op_type == "Conv" and node.domain == "" and constant_weights(node) is not None


def _sole_conv_reader(value: ir.Value) -> ir.Node | None:
    """The foldable Conv reading `value` as its data input, when it is the value's only reader."""
    reader = sole_reader(value, "Conv")
    return reader if reader is not None and reader.inputs[0] is value and _is_foldable_conv(reader) else None


def _touches_conv(data: ir.Value, node: ir.Node) -> bool:
    producer = data.producer()
    return (producer is not None and _is_foldable_conv(producer)) or _sole_conv_reader(node.outputs[0]) is not None


def _padded(conv: ir.Node) -> bool:
    auto_pad = conv.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return True
    return any(conv.attributes.get_ints("pads", ()))
