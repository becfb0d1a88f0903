"""Reading a user's ONNX file as onnx-ir, with one clear message for every way it can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
from onnx_ir.passes.common import TopologicalSortPass

from onebyone.runtime.bundle.tensors import DYNAMIC, TensorSpec
from onebyone.runtime.core.errors import CheckFailed, UserError

CHECK_SIZES_KEY = "onebyone.check_sizes"  # ONNX metadata: [[H, W], ...] of a dynamic-resolution export

EXTERNAL_DATA_BYTES = 2**31 - 2**26  # protobuf's 2 GiB limit, with headroom for the graph itself


def load_model(path: Path) -> ir.Model:
    """Load and check an ONNX file (external data included); any problem is a UserError."""
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file")
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as err:  # the protobuf decoder fails with several exception types
        raise UserError(f"{path} is not a readable ONNX file ({type(err).__name__}); "
                        "is it truncated or another format?") from None
    problem = _checker_problem(str(path))
    if problem is not None:
        raise UserError(f"{path} is not a valid ONNX model (onnx.checker: {problem}); re-export it, or repair it "
                        "with the tool that wrote it")
    return ir.load(path)


def _checker_problem(model: str | onnx.ModelProto) -> str | None:
    """onnx.checker's full check (structure, topological order, strict shape inference against every declared type
    and shape) of a file path or a proto: None when valid, else the first line of what it found, which names the
    node."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        return " ".join(str(err).split())[:400]
    return None


def validity_problem(model: ir.Model) -> str | None:
    """What makes `model` an invalid ONNX file (see `_checker_problem`), or None. For models under protobuf's 2 GiB;
    `save_model` checks the written file itself."""
    return _checker_problem(ir.to_proto(model))


def onnx_metadata(path: Path) -> dict[str, str]:
    """The file's metadata_props (what `export` writes: onebyone.model, .preprocess, .labels); {} if unreadable."""
    try:
        return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception:  # the protobuf decoder fails with several exception types; the engine reports the file
        return {}


def save_model(model: ir.Model, path: Path, made_by: str) -> list[Path]:
    """Save `model` (nodes sorted topologically first: an order is not a value) to `path`, a staging path, and check
    the written file with onnx.checker's full check; an invalid file raises CheckFailed naming `made_by` (the stage
    or pass that produced it) and the node, for the caller's staging to discard. Weights go to `<name>.data` beside
    it when they would break protobuf's 2 GiB limit. Returns the files written, the external-data file first
    (publish it before the file that refers to it)."""
    TopologicalSortPass()(model)
    weight_bytes = sum(v.const_value.nbytes for v in model.graph.initializers.values() if v.const_value is not None)
    if weight_bytes > EXTERNAL_DATA_BYTES:
        ir.save(model, path, external_data=f"{path.name}.data")
    else:
        ir.save(model, path)
    problem = _checker_problem(str(path))
    if problem is not None:
        raise CheckFailed(f"{made_by} produced an invalid ONNX file (onnx.checker: {problem}); nothing was written. "
                          "This is a onebyone bug: please report it with the input file")
    return [*external_data_files(path), path]


def external_data_files(path: Path) -> list[Path]:
    """The external-data files an ONNX file written by `save_model` refers to (empty when weights are inline)."""
    return sorted(path.parent.glob(f"{path.name}.data"))


def io_specs(model: ir.Model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The graph's inputs and outputs as specs (symbolic or unknown dimensions → -1)."""

    def spec(value: ir.Value) -> TensorSpec:
        if value.dtype is None or value.shape is None:
            raise UserError(f"graph input/output {value.name!r} has no type or shape; re-export the model")
        shape = tuple(d if isinstance(d, int) else DYNAMIC for d in value.shape)
        return TensorSpec(value.name, np.dtype(value.dtype.numpy()), shape)

    return [spec(v) for v in model.graph.inputs], [spec(v) for v in model.graph.outputs]


def nominal_shape(model: ir.Model) -> list[int] | None:
    """The input shape after the batch axis that the export recorded (`onebyone.input_shape`), if any."""
    recorded = model.metadata_props.get("onebyone.input_shape")
    return json.loads(recorded) if recorded else None


def check_sizes(model: ir.Model) -> list[tuple[int, int]]:
    """The H×W an export with a dynamic height/width was checked at (its own first; `CHECK_SIZES_KEY`), else []:
    calibration streams batches at each of them."""
    recorded = model.metadata_props.get(CHECK_SIZES_KEY)
    return [(int(h), int(w)) for h, w in json.loads(recorded)] if recorded else []


def graph_precision(model: ir.Model) -> str:
    """int8 when the graph has Q/DQ, fp16 when any tensor is FP16, else fp32."""
    ops = {node.op_type for node in model.graph.all_nodes()}
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        return "int8"
    values = [*model.graph.initializers.values(), *(o for n in model.graph.all_nodes() for o in n.outputs)]
    return "fp16" if any(v.dtype == ir.DataType.FLOAT16 for v in values) else "fp32"


def weight_axis(node: ir.Node, rank: int) -> int:
    """The output-channel axis of a weighted op's weight (Conv, ConvTranspose, Gemm, MatMul and their quantized
    forms QLinearConv, ConvInteger, QGemm, QLinearMatMul, MatMulInteger)."""
    if node.op_type in ("Conv", "QLinearConv", "ConvInteger"):
        return 0
    if node.op_type in ("Gemm", "QGemm"):
        return 0 if node.attributes.get_int("transB", 0) else 1
    if node.op_type == "ConvTranspose":
        return 1
    return rank - 1  # MatMul: (…, K, N)


FLOAT_TYPES = (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16)


def activation_names(model: ir.Model) -> list[str]:
    """Every float tensor the graph computes or takes as input, excluding constants, in topological order."""
    names = [v.name for v in model.graph.inputs if v.dtype in FLOAT_TYPES]
    for node in model.graph:
        names += [v.name for v in node.outputs if v.dtype in FLOAT_TYPES and not v.is_initializer()
                  and node.op_type != "Constant"]
    return names


def with_types(model: ir.Model) -> ir.Model:
    """A copy of `model` with ONNX shape inference's types and shapes on every value it can infer."""
    return ir.from_proto(onnx.shape_inference.infer_shapes(ir.to_proto(model)))


def exposing(model: ir.Model, names: list[str]) -> bytes:
    """A serialized copy of `model` (typed, see `with_types`) whose graph outputs are its own plus every tensor in
    `names`."""
    copy = ir.from_proto(ir.to_proto(model))
    values = {v.name: v for node in copy.graph for v in node.outputs} | {v.name: v for v in copy.graph.inputs}
    present = {v.name for v in copy.graph.outputs}
    for name in names:
        if name not in present:
            copy.graph.outputs.append(values[name])
    return ir.to_proto(copy).SerializeToString()


SMALL_FILL = 1024  # elements: a ConstantOfShape this small is folded like any constant


def fold_constants(model: ir.Model) -> None:
    """Replace every node whose inputs are all constant by its result, in place (onnxscript's constant folding).
    onnxscript keeps every ConstantOfShape to keep files small; one of at most SMALL_FILL elements is folded too —
    torch exports a Pad's constant pads through one (ConstantOfShape → Concat → Slice → Transpose → Reshape → Cast)."""
    import onnxscript.optimizer

    def small_fill(node: ir.Node) -> bool | None:
        if node.op_type != "ConstantOfShape" or node.domain != "":
            return None
        shape = ir.convenience.get_const_tensor(node.inputs[0]) if node.inputs[0] is not None else None
        return True if shape is not None and int(np.prod(shape.numpy())) <= SMALL_FILL else None

    onnxscript.optimizer.fold_constants(model, should_fold=small_fill)
