"""`onebyone adopt FOREIGN.onnx -o OUT.onnx`: a Q/DQ file made by another tool (ONNX Runtime's `quantize_static`,
a QAT export, ...) made TensorRT-ready where the rewrite is exact, checked against the foreign file on ONNX Runtime
(optimizations off, fresh random inputs, the rewrite tolerance) and linted for the named TensorRT releases. What
cannot be rewritten exactly (asymmetric ranges: a zero point other than 0, or than 128 for UINT8) stays, and the lint
names its rule; `onebyone quantize` from the float model is then the way.

The rewrites, each exact:

1. **INT32 bias DequantizeLinear → float bias.** `DQ(b, s, z) = (b − z)·s`, computed once in float32 exactly as ONNX
   Runtime computes it (the integer difference converted to float, times the scale, per channel along `axis`),
   becomes an initializer. TensorRT quantizes biases itself and has no INT32 DequantizeLinear.
2. **Symmetric UINT8 → INT8.** With a zero point of 128 everywhere, `clamp(round(x/s) + 128, 0, 255) − 128 =
   clamp(round(x/s), −128, 127)`: QuantizeLinear with an INT8 zero point 0 gives `q − 128`, and `DQ(q, s, 128) =
   (q − 128)·s = DQ(q − 128, s, 0)`. A UINT8 constant (weight) is stored as `w − 128` in INT8. Rewritten only where
   every reader of the quantized tensor is a DequantizeLinear with the same zero point.
3. **Half scales typed like their data.** A FLOAT16/BFLOAT16 scale on FLOAT data (opset ≥ 23 allows it) is stored
   as FLOAT: every half value is a float, so the scale is the same number; TensorRT's strongly typed networks ask
   for it (NvInfer.h, 10.16 and 11.1)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx_ir as ir
from onnx_ir.passes.common import RemoveUnusedNodesPass

from onebyone.optimize.graph import add_initializer, constant
from onebyone.optimize.verify import Verifier
from onebyone.runtime.bundle.onnx_file import load_model, save_model, with_types
from onebyone.runtime.core.errors import CheckFailed, UserError
from onebyone.runtime.core.files import publish, staging_dir
from onebyone.runtime.preflight.lint import Lint, lint_model

QDQ = ("QuantizeLinear", "DequantizeLinear")
HALF = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)


@dataclasses.dataclass(frozen=True)
class AdoptResult:
    output: Path
    rewrites: dict[str, int]  # rewrite → how many nodes it changed
    check: str  # OUT against FOREIGN on ONNX Runtime
    lint: Lint


def adopt(source: Path, output: Path, tensorrt: list[str] | None = None) -> AdoptResult:
    """Rewrite `source` into `output` (see the module); CheckFailed when the result does not compute what the foreign
    file computes, or when a named TensorRT release would still refuse it (its rules listed; nothing written)."""
    if output.resolve() == source.resolve():
        raise UserError(f"-o {output} is the foreign file itself; write the adopted file beside it")
    foreign = with_types(load_model(source))
    verifier = Verifier(foreign)
    before = verifier.outputs(foreign)
    model = with_types(load_model(source))
    rewrites = {"INT32 bias DequantizeLinear folded to a float bias": _fold_bias_dequantize(model),
                "UINT8 zero point 128 shifted to INT8 zero point 0": _shift_uint8(model),
                "half scale stored as FLOAT": _match_scale_types(model)}
    RemoveUnusedNodesPass()(model)  # the INT32 biases and UINT8 zero points no node reads any more
    check = verifier.compare(before, model)
    if not check.ok:
        raise CheckFailed(f"the adopted file does not compute what {source} computes ({check.describe()}); a "
                          "onebyone bug: nothing was written")
    lint = lint_model(model, tensorrt, output.name)
    if not lint.accepted:
        raise CheckFailed(f"{source} cannot be made TensorRT-ready exactly (nothing was written): "
                          + "; ".join(lint.refusals()[:6]) + "; quantize the float model with `onebyone quantize "
                          "--precision int8 --flavour trt` instead")
    with staging_dir(output.parent) as stage:
        written = save_model(model, stage / output.name, "adopt")
        for path in written:
            publish(path, output.parent / path.name)
    return AdoptResult(output, {name: count for name, count in rewrites.items() if count},
                       f"ORT vs {source.name}: {check.describe()}", lint)


def _fold_bias_dequantize(model: ir.Model) -> int:
    graph, folded = model.graph, 0
    for node in list(graph):
        if node.op_type != "DequantizeLinear" or node.inputs[0].dtype != ir.DataType.INT32:
            continue
        values = [constant(v) if v is not None and v.name else None for v in node.inputs]
        data, scale = values[0], values[1]
        zero = values[2] if len(values) > 2 else None
        if data is None or scale is None or (len(values) > 2 and node.inputs[2].name and zero is None):
            continue
        axis = node.attributes["axis"].as_int() if "axis" in node.attributes else 1
        shape = [1] * data.ndim
        if scale.size > 1:
            shape[axis % data.ndim] = scale.size
        difference = data.astype(np.int64) - (0 if zero is None else zero.astype(np.int64).reshape(shape))
        bias = difference.astype(np.float32) * scale.astype(np.float32).reshape(shape if scale.size > 1 else ())
        value = add_initializer(graph, f"{node.outputs[0].name}_float", bias.astype(scale.dtype))
        node.outputs[0].replace_all_uses_with(value, replace_graph_outputs=True)
        graph.remove(node, safe=True)
        folded += 1
    return folded


def _zero(node: ir.Node) -> np.ndarray | None:
    return constant(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None


def _symmetric_u8(node: ir.Node) -> bool:
    zero = _zero(node)
    return zero is not None and node.inputs[2].dtype == ir.DataType.UINT8 and bool(np.all(zero == 128))


def _int8_zero(graph: ir.Graph, node: ir.Node) -> None:
    node.replace_input_with(2, add_initializer(graph, f"{node.name or 'qdq'}_zero_point",
                                               np.zeros(_zero(node).shape, np.int8)))


def _shift_uint8(model: ir.Model) -> int:
    graph, shifted = model.graph, 0
    for node in list(graph):
        if node.op_type == "QuantizeLinear" and _symmetric_u8(node):
            readers = [use.node for use in node.outputs[0].uses()]
            if node.outputs[0].is_graph_output() or not all(
                    r.op_type == "DequantizeLinear" and _symmetric_u8(r) for r in readers):
                continue
            for reader in [node, *readers]:
                _int8_zero(graph, reader)
            node.outputs[0].dtype = ir.DataType.INT8
            shifted += 1 + len(readers)
        elif node.op_type == "DequantizeLinear" and _symmetric_u8(node) and constant(node.inputs[0]) is not None:
            weight = constant(node.inputs[0]).astype(np.int16) - 128
            node.replace_input_with(0, add_initializer(graph, f"{node.inputs[0].name}_int8", weight.astype(np.int8)))
            _int8_zero(graph, node)
            shifted += 1
    return shifted


def _match_scale_types(model: ir.Model) -> int:
    graph, cast = model.graph, 0
    for node in list(graph):
        if node.op_type not in QDQ or node.inputs[1].dtype not in HALF:
            continue
        float_side = node.inputs[0] if node.op_type == "QuantizeLinear" else node.outputs[0]
        scale = constant(node.inputs[1])
        if float_side.dtype in (None, node.inputs[1].dtype) or scale is None:
            continue
        node.replace_input_with(1, add_initializer(graph, f"{node.inputs[1].name}_{float_side.dtype.name.lower()}",
                                                   scale.astype(float_side.dtype.numpy())))
        cast += 1
    return cast
