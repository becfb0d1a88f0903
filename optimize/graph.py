"""Small onnx-ir helpers shared by the graph passes."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx_ir as ir


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant contents (initializer or Constant node) as numpy, or None when not constant."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def opset_version(model: ir.Model, domain: str = "") -> int:
    return model.opset_imports.get(domain, 1)


def op_counts(graph: ir.Graph) -> dict[str, int]:
    return dict(sorted(Counter(node.op_type for node in graph).items()))


def unique_name(graph: ir.Graph, base: str) -> str:
    """`base`, or `base_1`, `base_2`, ... — the first name no value of the graph uses."""
    taken = {v.name for node in graph for v in (*node.inputs, *node.outputs) if v is not None}
    taken |= set(graph.initializers) | {v.name for v in graph.inputs}
    name, suffix = base, 0
    while name in taken:
        suffix += 1
        name = f"{base}_{suffix}"
    return name


def add_initializer(graph: ir.Graph, base_name: str, array: np.ndarray) -> ir.Value:
    name = unique_name(graph, base_name)
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name), shape=ir.Shape(array.shape),
                     type=ir.TensorType(ir.DataType.from_numpy(array.dtype)))
    graph.register_initializer(value)
    return value


def set_constant_input(graph: ir.Graph, node: ir.Node, index: int, array: np.ndarray, base_name: str) -> None:
    """Give `node` input `index` the constant `array` (appending the input when the node lacks it, e.g. a bias).

    The node gets a new initializer of its own: an initializer may be shared with other nodes (deduplicated
    weights, tied weights), and those users must keep the value they had. The old one goes when unused.
    """
    old = node.inputs[index] if index < len(node.inputs) else None
    if old is None and index >= len(node.inputs):
        node.resize_inputs(index + 1)
    node.replace_input_with(index, add_initializer(graph, base_name, array))
    drop_if_unused(graph, old)


def drop_if_unused(graph: ir.Graph, value: ir.Value | None) -> None:
    """Remove `value` from the graph's initializers when it is one and nothing reads it any more."""
    if value is not None and value.is_initializer() and not value.uses() and not value.is_graph_output():
        graph.initializers.pop(value.name)


def take_over(graph: ir.Graph, old_node: ir.Node, new_value: ir.Value) -> None:
    """Remove `old_node` (single output) and let `new_value` stand in its place: every use, graph output, name, type
    and shape (it computes the same tensor, so what was declared for it still holds). Initializers only `old_node`
    read go with it.

    Keeping the name is what lets parity reports map tensors across the files a pipeline writes.
    """
    old_value = old_node.outputs[0]
    name = old_value.name
    old_inputs = list(old_node.inputs)
    old_value.replace_all_uses_with(new_value, replace_graph_outputs=True)
    graph.remove(old_node, safe=True)
    new_value.name = name
    new_value.type, new_value.shape = old_value.type or new_value.type, old_value.shape  # the same tensor
    for value in old_inputs:
        drop_if_unused(graph, value)


def single_consumer(value: ir.Value, consumer: ir.Node) -> bool:
    """True when `consumer` is the only reader of `value` and it is not a graph output."""
    return not value.is_graph_output() and all(use.node is consumer for use in value.uses())


def sole_reader(value: ir.Value, op_type: str) -> ir.Node | None:
    """The standard-domain `op_type` node that is `value`'s only reader, if there is one."""
    uses = list(value.uses())
    if value.is_graph_output() or len(uses) != 1:
        return None
    node = uses[0].node
    return node if node.op_type == op_type and node.domain == "" else None


def is_pointwise(conv: ir.Node, weight: np.ndarray) -> bool:
    """A 1x1 Conv with stride 1, no padding and group 1: a matrix over channels applied at every pixel."""
    attrs = conv.attributes
    return (all(size == 1 for size in weight.shape[2:]) and attrs.get_int("group", 1) == 1
            and all(s == 1 for s in attrs.get_ints("strides", ())) and not any(attrs.get_ints("pads", ()))
            and attrs.get_string("auto_pad", "NOTSET") in ("NOTSET", "VALID"))


def constant_weights(conv: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """(W, b) as float64 when both are constants (b = 0 when the Conv has none), else None."""
    weight = constant(conv.inputs[1])
    has_bias = len(conv.inputs) > 2 and conv.inputs[2] is not None
    bias = constant(conv.inputs[2]) if has_bias else None
    if weight is None or (has_bias and bias is None):
        return None
    return weight.astype(np.float64), np.zeros(weight.shape[0]) if bias is None else bias.astype(np.float64)
