"""Merge sibling Convs that read the same tensor into one wider Conv followed by a Split."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import add_initializer, constant, constant_weights, opset_version, take_over, unique_name
from onebyone.optimize.passes.base import GraphPass

SiblingKey = tuple[object, ...]


def sibling_key(conv: ir.Node, weight: np.ndarray) -> SiblingKey:
    """What must agree for two Convs on one input to share a kernel launch: kernel, stride, padding, dilation."""
    attrs = conv.attributes
    spatial = weight.ndim - 2
    return (weight.shape[1:], weight.dtype.str, attrs.get_string("auto_pad", "NOTSET"),
            tuple(attrs.get_ints("strides", (1,) * spatial)), tuple(attrs.get_ints("pads", (0,) * 2 * spatial)),
            tuple(attrs.get_ints("dilations", (1,) * spatial)))


class MergeSiblings(GraphPass):
    """Convs y_i = W_i∗x + b_i (i = 1…n) reading the same x with equal kernel size, stride, padding and dilation,
    group 1 and constant weights, are one Conv and a Split along channels:

        [y_1; …; y_n] = [W_1; …; W_n]∗x + [b_1; …; b_n],   y_i = Split(axis=1, sizes = C_out,i)

    (Inception branches' 1x1 reductions; a ResNet stage's first 1x1 and its downsample projection.) Split takes its
    sizes as an input from opset 13 on and as an attribute before. Each branch's output keeps its name and readers.
    """

    name = "merge_siblings"

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        opset = opset_version(model)
        values = [*graph.inputs, *(out for node in graph for out in node.outputs)]
        changed = False
        for value in values:
            for siblings in self._sibling_groups(graph, value):
                self._merge(graph, value, siblings, opset)
                changed = True
        return ir.passes.PassResult(model, changed)

    def _sibling_groups(self, graph: ir.Graph, value: ir.Value) -> list[list[ir.Node]]:
        groups: dict[SiblingKey, list[ir.Node]] = defaultdict(list)
        for node, index in value.uses():
            if index != 0 or node.op_type != "Conv" or node.domain != "" or node.graph is not graph:
                continue
            params = constant_weights(node)
            if params is None:
                self.refuse(node, "weight or bias is not a constant")
            elif node.attributes.get_int("group", 1) != 1:
                self.refuse(node, "grouped Conv: concatenating output channels would break its groups")
            else:
                groups[sibling_key(node, constant(node.inputs[1]))].append(node)
        if len([node for members in groups.values() for node in members]) > 1 and len(groups) > 1:
            for members in groups.values():
                if len(members) == 1:
                    self.refuse(members[0], f"no sibling on {value.name!r} with the same kernel, stride, padding "
                                            "and dilation")
        return [members for members in groups.values() if len(members) > 1]

    @staticmethod
    def _merge(graph: ir.Graph, value: ir.Value, siblings: list[ir.Node], opset: int) -> None:
        order = {node: position for position, node in enumerate(graph)}
        siblings = sorted(siblings, key=order.__getitem__)
        weights = [constant_weights(node) for node in siblings]
        dtype = constant(siblings[0].inputs[1]).dtype
        sizes = [weight.shape[0] for weight, _ in weights]
        base = "+".join(node.name or "Conv" for node in siblings)
        merged_weight = np.concatenate([weight for weight, _ in weights]).astype(dtype)
        merged_bias = np.concatenate([bias for _, bias in weights]).astype(dtype)
        merged = ir.node("Conv", [value, add_initializer(graph, f"{base}.weight", merged_weight),
                                  add_initializer(graph, f"{base}.bias", merged_bias)],
                         attributes={name: attr.value for name, attr in siblings[0].attributes.items()}, name=base,
                         outputs=[ir.val(unique_name(graph, f"{base}_output_0"))])
        split_inputs = [merged.outputs[0]]
        split_attributes: dict[str, object] = {"axis": 1}
        if opset >= 13:
            split_inputs.append(add_initializer(graph, f"{base}.split", np.array(sizes, dtype=np.int64)))
        else:
            split_attributes["split"] = sizes
        split = ir.node("Split", split_inputs, attributes=split_attributes, name=f"{base}/Split",
                        num_outputs=len(siblings))
        for index, output in enumerate(split.outputs):
            output.name = unique_name(graph, f"{base}/Split_output_{index}")
        graph.insert_before(siblings[0], [merged, split])
        for node, output in zip(siblings, split.outputs, strict=True):
            take_over(graph, node, output)

