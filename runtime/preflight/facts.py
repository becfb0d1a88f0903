"""What lint asks of a graph, answered from the file alone: build-time constants, ranks and static shapes, whether an
optional input or output is used, and an operator's inputs, outputs and attributes by their ONNX names."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir


class Facts:
    def __init__(self, model: ir.Model) -> None:
        self.model = model
        self.opset = model.opset_imports.get("", 1)
        self._build_time: dict[int, bool] = {}

    def schema(self, node: ir.Node) -> onnx.defs.OpSchema | None:
        try:
            return onnx.defs.get_schema(node.op_type, max_inclusive_version=self.opset, domain=node.domain)
        except onnx.defs.SchemaError:
            return None

    def input(self, node: ir.Node, name: str) -> ir.Value | None:
        """The node's input the ONNX schema calls `name` (None when the schema has none of that name or it is
        left out)."""
        return self._named(node, name, "inputs")

    def output(self, node: ir.Node, name: str) -> ir.Value | None:
        return self._named(node, name, "outputs")

    def _named(self, node: ir.Node, name: str, side: str) -> ir.Value | None:
        schema = self.schema(node)
        names = [formal.name for formal in getattr(schema, side)] if schema is not None else []
        values = getattr(node, side)
        index = names.index(name) if name in names else None
        return values[index] if index is not None and index < len(values) else None

    def has_attribute(self, node: ir.Node, name: str) -> bool:
        schema = self.schema(node)
        return schema is not None and name in schema.attributes

    @staticmethod
    def attribute(node: ir.Node, name: str, default: object = None) -> object:
        attr = node.attributes.get(name)
        return default if attr is None else attr.value

    @staticmethod
    def used(value: ir.Value | None) -> bool:
        """An optional output is used: it has a name and a reader, or it is a graph output."""
        return value is not None and bool(value.name) and (bool(value.uses()) or value.is_graph_output())

    @staticmethod
    def constant(value: ir.Value | None) -> np.ndarray | None:
        tensor = ir.convenience.get_const_tensor(value) if value is not None else None
        return None if tensor is None else tensor.numpy()

    @staticmethod
    def initializer(value: ir.Value) -> bool:
        return value.is_initializer() or (value.producer() is not None and value.producer().op_type == "Constant")

    def build_time(self, value: ir.Value | None) -> bool:
        """Known when the engine is built: a constant, or computed from constants only (the shape of a tensor with a
        static shape counts)."""
        if value is None:
            return True
        if value.const_value is not None or value.is_initializer():
            return True
        if value.is_graph_input():
            return False
        key = id(value)
        if key not in self._build_time:
            self._build_time[key] = False  # a cycle (through a subgraph) is not constant
            producer = value.producer()
            if producer is None:
                known = False
            elif producer.op_type == "Shape":
                known = self.static(producer.inputs[0])
            elif producer.op_type.startswith("Random"):
                known = False
            else:
                known = all(self.build_time(v) for v in producer.inputs if v is not None)
            self._build_time[key] = known
        return self._build_time[key]

    @staticmethod
    def rank(value: ir.Value | None) -> int | None:
        return None if value is None or value.shape is None else len(value.shape)

    @staticmethod
    def static(value: ir.Value | None) -> bool:
        return value is not None and value.shape is not None and all(isinstance(d, int) for d in value.shape)
