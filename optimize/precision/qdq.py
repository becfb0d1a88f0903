"""Q/DQ insertion: explicit INT8 quantization written into the graph from calibrated ranges.

Activation tensor T with range r gets one pair `T → QuantizeLinear → DequantizeLinear → T_dequantized` that the
chosen readers of T read instead of T; T keeps its name (and float value) for every other reader.

    Q(x) = saturate(round(x / s) + z),   DQ(q) = (q − z) · s

Flavours, from the same ranges:
- `trt`: symmetric S8, z = 0, s = amax / 127 per tensor; pairs on the data inputs of Conv/ConvTranspose/Gemm/
  MatMul, of AveragePool/GlobalAveragePool (TensorRT fuses DQ → pool → Q into an INT8 pool, and the block before
  it then writes INT8) and on the residual input of a two-tensor Add only (TensorRT fuses the other input, a
  weighted op's output, into that op's epilogue). Relu stays; nothing quantizes a weighted op's output otherwise.
  A Gemm/MatMul with N or K < MIN_MATMUL_DIM, or a GEMV (M or N = 1 in a fixed output shape), stays float: INT8
  Tensor Core GEMMs need N, K ≥ 16, and Q/DQ on smaller ones slows TensorRT down (NVIDIA Model Optimizer's rule,
  `find_nodes_from_matmul_to_exclude`). docs/precision.md has the placement table for ResNet-50.
- `ort`: U8 activations over [lo, hi] = [min(0, max(min, −amax)), max(0, min(max, amax))], s = (hi − lo) / 255,
  z = round(−lo / s); pairs on every tensor a quantizable op reads, so ONNX Runtime's QDQ fusions turn
  DQ→Conv→(Relu→)Q into QLinearConv (a Relu before a Q with z = 0 is its saturation), DQ→Add→Q into QLinearAdd
  and so on. Reshape-like ops and MaxPool share their input's (s, z): ORT then drops their Q/DQ entirely.

Weights (both flavours): per output channel c, s_c = max(max|W_c| / L, MIN_SCALE), W_q = clip(round(W / s_c), −L, L)
as an INT8 initializer read through a DequantizeLinear on the channel axis (0 for Conv and transB Gemm, 1 for
ConvTranspose, Gemm without transB and MatMul). `ort` also stores the bias as INT32 with s = s_x · s_c, as ORT's
QLinearConv requires; a float bias of a quantized product (every `trt` one) is stated as an Add after it, which
stock ONNX Runtime computes as written (`_bias_as_add` says why). The weight range sets L:
- `safe`, L = 64: |W_q| ≤ 64, so every pair a₁w₁ + a₂w₂ with a ∈ [0, 255] stays within ±255·128 = ±32640 and fits the
  saturating int16 of a non-VNNI x86 int8 dot product (runtime/bundle/int8_overflow.py): the file computes its own Q/DQ
  math on every CPU. The same levels as ONNX Runtime's `reduce_range`.
- `full`, L = 127: one more bit of weight resolution, for engines that accumulate in int32 (TensorRT on GPUs, VNNI
  and AMX CPUs); on other x86 CPUs the kernels may saturate.
With the tap means of a layer's input (`input_means`, from calibration), its bias b becomes b − ΔW·M before it is
stored (INT32 in `ort`; added when the layer has none): the mean output error of W_q·s − W on the calibration data
taken out (bias_correction.py states the algebra).

Degenerate ranges (both flavours): a tensor 0 on every calibration sample gets s = 1/127 (flavours.py) and a
warning naming it; a tensor whose non-zero range r needs s = r / levels < MIN_SCALE keeps its readers float (each
named in the report with the reason: at the floor scale every one of its values would round to 0). `ort` also
raises a weight channel's s_c to |b_c| / (s_x · (2³¹−1)/2) where its INT32 bias b_c / (s_x · s_c) would not fit
(ONNX Runtime fuses the node regardless and a wrapped bias zeroes its output): such a channel's weights are ~0 beside
its bias (a channel BatchNorm folding all but switched off), so a coarser step costs nothing there, where raising the
shared s_x — the rule before — coarsened every channel (docs/precision.md).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from onebyone.optimize.graph import (
    add_initializer,
    constant,
    drop_if_unused,
    opset_version,
    set_constant_input,
    unique_name,
)
from onebyone.optimize.precision.bias_correction import corrected_bias
from onebyone.optimize.precision.flavours import (
    FLAVOURS,
    INT8_MAX,
    INT32_MAX,
    MIN_MATMUL_DIM,
    MIN_SCALE,
    UINT8_MAX,
    WEIGHT_LEVELS,
    activation_scale_of,
    default_weight_range,
)
from onebyone.runtime.bundle.onnx_file import weight_axis
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.errors import UserError, option

WEIGHTED = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
SHARES_INPUT_RANGE = frozenset({"MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose"})
POOLS = frozenset({"AveragePool", "GlobalAveragePool"})
ORT_QUANTIZED = WEIGHTED | SHARES_INPUT_RANGE | POOLS | {"Add", "Concat"}
MIN_QDQ_OPSET = 13  # per-channel DequantizeLinear (axis) arrived in opset 13


@dataclasses.dataclass(frozen=True)
class TensorRange:
    """Calibrated range of one activation: the amax of the chosen method and the observed min/max."""

    amax: float
    minimum: float
    maximum: float


@dataclasses.dataclass
class QuantizeReport:
    activations: int = 0  # tensors given a Q/DQ pair
    weights: int = 0  # weight initializers stored as INT8
    float_nodes: dict[str, str] = dataclasses.field(default_factory=dict)  # weighted node → why it stays float
    degenerate: dict[str, str] = dataclasses.field(default_factory=dict)  # tensor → why it got the floor scale
    bias_corrected: int = 0  # weighted nodes whose bias takes out their weights' mean rounding error


def insert_qdq(model: ir.Model, ranges: dict[str, TensorRange], flavour: str, exclude: set[str],
               weight_range: str | None = None, input_means: dict[str, np.ndarray] | None = None) -> QuantizeReport:
    """Quantize `model` in place; nodes named in `exclude` keep float inputs and weights. `weight_range`: "safe" or
    "full" (None: the default on this CPU, `default_weight_range`). `input_means`: node → the tap means of its input
    (`Calibration.input_means`); each node found there gets its bias corrected for its weights' rounding
    (bias_correction.py). Last, every quantized product's float bias moves to an Add after it (`_bias_as_add`)."""
    if flavour not in FLAVOURS:
        raise UserError(f"unknown flavour {flavour!r}; valid: {', '.join(FLAVOURS)}")
    levels = WEIGHT_LEVELS[weight_range or default_weight_range(this_cpu().int8_saturates)]
    if opset_version(model) < MIN_QDQ_OPSET:
        raise UserError(f"INT8 Q/DQ needs ONNX opset ≥ {MIN_QDQ_OPSET} (per-channel weights); the model has opset "
                        f"{opset_version(model)}: re-export it with a newer opset")
    graph = model.graph
    report = QuantizeReport(float_nodes={name: "excluded by the user" for name in sorted(exclude)})
    if flavour == "trt":
        small = {node.name: why for node in graph if node.name not in exclude and (why := small_gemm(node))}
        report.float_nodes |= small
        exclude = exclude | set(small)
    find_sites = _trt_sites if flavour == "trt" else _ort_sites
    sites = find_sites(graph, exclude)
    vanishing = _vanishing_readers(sites, ranges, flavour)
    if vanishing:
        report.float_nodes |= vanishing
        exclude = exclude | set(vanishing)
        sites = find_sites(graph, exclude)
    dequantized: dict[ir.Value, tuple[ir.Value, ir.Value]] = {}  # DQ output → its (scale, zero point)
    for value in _in_order(graph, sites):
        if value.name not in ranges:
            raise UserError(f"the calibration has no range for tensor {value.name!r}: it was made for another "
                            f"model; calibrate this one ({option('calib', 'DATA')})")
        shared = _shared_parameters(value, dequantized) if flavour == "ort" else None
        rng = ranges[value.name]
        if shared is None and (note := scale_note(rng, flavour)[1]) is not None:
            report.degenerate[value.name] = note
        scale, zero_point = shared or _activation_parameters(graph, value.name, rng, flavour)
        dequantized[_insert_pair(graph, value, scale, zero_point, sites[value])] = (scale, zero_point)
        report.activations += 1
    for node in list(graph):
        if node.op_type not in WEIGHTED or node.domain != "" or node.name in exclude:
            continue
        input_parameters = dequantized.get(node.inputs[0])
        if flavour == "ort" and input_parameters is None:
            report.float_nodes[node.name] = "its input is not quantized"
            continue
        input_scale = input_parameters[0].const_value.numpy() if flavour == "ort" else None
        means = (input_means or {}).get(node.name)
        stored, kept_float, corrected = _quantize_weights(graph, node, input_scale, levels, means)
        report.weights += stored
        report.bias_corrected += corrected
        if kept_float is not None:
            report.float_nodes[node.name] = kept_float
    for node in list(graph):
        _bias_as_add(graph, node)
    return report


def _trt_sites(graph: ir.Graph, exclude: set[str]) -> dict[ir.Value, list[tuple[ir.Node, int]]]:
    """Data inputs of weighted ops and of average pools, and residual inputs of Adds."""
    sites: dict[ir.Value, list[tuple[ir.Node, int]]] = {}
    for node in graph:
        if node.domain != "" or node.name in exclude:
            continue
        if node.op_type in WEIGHTED:
            indices = [i for i in (0, 1) if node.op_type == "MatMul" or i == 0]
        elif node.op_type in POOLS:
            indices = [0]
        elif node.op_type == "Add":
            indices = _residual_inputs(node)
        else:
            continue
        for index in indices:
            value = node.inputs[index]
            if value is not None and constant(value) is None and _activation(value):
                sites.setdefault(value, []).append((node, index))
    return sites


def small_gemm(node: ir.Node) -> str | None:
    """Why a Gemm/MatMul is too small for TensorRT's INT8 GEMMs (N or K < MIN_MATMUL_DIM, or a GEMV: M or N = 1 in
    its output shape), or None. A dynamic batch dimension is not 1."""
    if node.op_type not in ("Gemm", "MatMul") or node.domain != "":
        return None
    b_shape = node.inputs[1].shape
    if b_shape is None or len(b_shape) < 2:
        return None
    transposed = node.op_type == "Gemm" and node.attributes.get_int("transB", 0) == 1
    k, n = (b_shape[-1], b_shape[-2]) if transposed else (b_shape[-2], b_shape[-1])
    small = [f"{name} = {dim}" for name, dim in (("N", n), ("K", k)) if isinstance(dim, int) and dim < MIN_MATMUL_DIM]
    if small:
        return (f"{', '.join(small)} < {MIN_MATMUL_DIM}: INT8 Tensor Core GEMMs need N, K ≥ {MIN_MATMUL_DIM}, "
                "smaller ones run slower with Q/DQ in TensorRT")
    output = node.outputs[0].shape
    if output is not None and len(output) >= 2 and 1 in (output[-2], output[-1]):
        return "a GEMV (M or N = 1 in its output shape): no Tensor Core INT8 GEMM for it in TensorRT"
    return None


def _residual_inputs(add: ir.Node) -> list[int]:
    """The skip input(s) of a residual Add: those not produced by a weighted op that feeds only this Add. When both
    are (a downsampling block), input 1: `out + identity` in the torch source. Adds of a constant: none."""
    if len(add.inputs) != 2 or any(constant(v) is not None for v in add.inputs):
        return []
    fused = [_epilogue_of_weighted_op(v, add) for v in add.inputs]
    skip = [i for i in (0, 1) if not fused[i]]
    return skip or [1]


def _epilogue_of_weighted_op(value: ir.Value, add: ir.Node) -> bool:
    producer = value.producer()
    uses = list(value.uses())
    return (producer is not None and producer.op_type in WEIGHTED and not value.is_graph_output()
            and len(uses) == 1 and uses[0].node is add)


def _activation(value: ir.Value) -> bool:
    """A float tensor: not the int64 shape arithmetic of a dynamic-resolution graph (Shape → Gather → Unsqueeze →
    Concat → Resize), which the same op types also carry."""
    return value.dtype is None or value.dtype.is_floating_point()


def _ort_sites(graph: ir.Graph, exclude: set[str]) -> dict[ir.Value, list[tuple[ir.Node, int]]]:
    """Every float data input of a quantizable op (ORT runs those as QLinear*/QGemm/U8 kernels)."""
    sites: dict[ir.Value, list[tuple[ir.Node, int]]] = {}
    for node in graph:
        if node.domain != "" or node.name in exclude or node.op_type not in ORT_QUANTIZED:
            continue
        if node.op_type in ("Add", "Concat"):
            if any(constant(v) is not None for v in node.inputs):
                continue
            indices = list(range(len(node.inputs)))
        elif node.op_type == "MatMul":
            indices = [0, 1]
        else:
            indices = [0]
        for index in indices:
            value = node.inputs[index]
            if value is not None and constant(value) is None and _activation(value):
                sites.setdefault(value, []).append((node, index))
    return sites


def _vanishing_readers(sites: dict[ir.Value, list[tuple[ir.Node, int]]], ranges: dict[str, TensorRange],
                       flavour: str) -> dict[str, str]:
    """The readers of every tensor whose calibrated range is non-zero but needs a scale below MIN_SCALE, each with
    why it stays float: at the floor scale every calibrated value of that tensor rounds to 0, so quantizing its
    readers erases what they read (an untrained network's activations of ~1e-9 are all such); in float they keep it.
    A tensor that is exactly 0 on every sample is not among them: any scale represents it."""
    kept: dict[str, str] = {}
    for value, readers in sites.items():
        rng = ranges.get(value.name)
        if rng is None:
            continue
        low, high = _ort_bounds(rng)
        span, levels = (rng.amax, INT8_MAX) if flavour == "trt" else (high - low, UINT8_MAX)
        if 0 < span / levels < MIN_SCALE:
            for node, _ in readers:
                kept.setdefault(node.name, f"its input {value.name!r} has calibrated range {span:.3g}, below the "
                                           f"smallest usable scale ({MIN_SCALE:.3g} × {levels}): every value would "
                                           "quantize to 0")
    return kept


def _in_order(graph: ir.Graph, sites: dict[ir.Value, list]) -> list[ir.Value]:
    """The tensors of `sites` in topological order (graph inputs first), so shared ranges exist when needed."""
    order = [*graph.inputs, *(v for node in graph for v in node.outputs)]
    return [v for v in order if v in sites]


def _shared_parameters(value: ir.Value, dequantized: dict[ir.Value, tuple[ir.Value, ir.Value]]
                       ) -> tuple[ir.Value, ir.Value] | None:
    """The (scale, zero point) of the input of the range-preserving op that produces `value`, if it reads a DQ."""
    producer = value.producer()
    if producer is None or producer.op_type not in SHARES_INPUT_RANGE or producer.domain != "":
        return None
    return dequantized.get(producer.inputs[0])


def _ort_bounds(rng: TensorRange) -> tuple[float, float]:
    return min(0.0, max(rng.minimum, -rng.amax)), max(0.0, min(rng.maximum, rng.amax))


def scale_note(rng: TensorRange, flavour: str) -> tuple[float, str | None]:
    """The activation's scale, and why it is not its range over the levels (0 on every sample, or too small:
    optimize/precision/flavours.py)."""
    if flavour == "trt":
        return activation_scale_of(rng.amax, INT8_MAX)
    low, high = _ort_bounds(rng)
    return activation_scale_of(high - low, UINT8_MAX)


def activation_scale(rng: TensorRange, flavour: str) -> tuple[np.float32, np.int8 | np.uint8]:
    """(s, z) of one activation tensor in a flavour (see the module docstring); a range that is 0, or gives a scale
    below MIN_SCALE, gets the floor scale (its calibrated values, ≈ 0, stay exact)."""
    scale = np.float32(scale_note(rng, flavour)[0])
    if flavour == "trt":
        return scale, np.int8(0)
    low, _ = _ort_bounds(rng)
    return scale, np.uint8(np.clip(np.rint(-low / scale), 0, UINT8_MAX))


def _activation_parameters(graph: ir.Graph, name: str, rng: TensorRange, flavour: str) -> tuple[ir.Value, ir.Value]:
    scale, zero_point = activation_scale(rng, flavour)
    return (add_initializer(graph, f"{name}_scale", np.array(scale)),
            add_initializer(graph, f"{name}_zero_point", np.array(zero_point)))


def _insert_pair(graph: ir.Graph, value: ir.Value, scale: ir.Value, zero_point: ir.Value,
                 readers: list[tuple[ir.Node, int]]) -> ir.Value:
    """Q/DQ `value` for `readers`; returns the dequantized value they now read."""
    quantize = ir.node("QuantizeLinear", [value, scale, zero_point], name=f"{value.name}/QuantizeLinear")
    quantize.outputs[0].name = unique_name(graph, f"{value.name}_quantized")
    quantize.outputs[0].type = ir.TensorType(zero_point.dtype)
    quantize.outputs[0].shape = value.shape
    dequantize = ir.node("DequantizeLinear", [quantize.outputs[0], scale, zero_point],
                         name=f"{value.name}/DequantizeLinear")
    dequantize.outputs[0].name = unique_name(graph, f"{value.name}_dequantized")
    dequantize.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    dequantize.outputs[0].shape = value.shape
    producer = value.producer()
    if producer is None:
        graph.insert_before(next(iter(graph)), [quantize, dequantize])
    else:
        graph.insert_after(producer, [quantize, dequantize])
    for node, index in readers:
        node.replace_input_with(index, dequantize.outputs[0])
    return dequantize.outputs[0]


def per_channel_weights(weight: np.ndarray, axis: int, levels: int,
                        floor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(W_q int8 in [−L, L], s float32 per channel) with s_c = max(max|W_c| / L, MIN_SCALE, floor_c) (1/L for an
    all-zero channel); `floor`: per channel, the least scale the channel's INT32 bias needs (`ort`)."""
    others = tuple(i for i in range(weight.ndim) if i != axis)
    amax = np.abs(weight).max(axis=others)
    scale = np.where(amax > 0, np.maximum(amax / levels, MIN_SCALE), 1 / levels)
    scale = np.maximum(scale, floor if floor is not None else 0).astype(np.float32)
    shape = [1] * weight.ndim
    shape[axis] = -1
    quantized = np.clip(np.rint(weight / scale.reshape(shape)), -levels, levels).astype(np.int8)
    return quantized, scale


def _quantize_weights(graph: ir.Graph, node: ir.Node, input_scale: np.float32 | None, levels: int,
                      means: np.ndarray | None) -> tuple[int, str | None, bool]:
    """Store the node's constant weight as INT8, and with the scale of its quantized input (`ort`) its bias as INT32;
    with the tap means of its input (`means`), its bias corrected first (bias_correction.py). Returns how many
    weights it stored, or (0, why) when the node must stay float: an INT32 bias b / (s_x · s_w) that does not fit
    (ONNX Runtime would fuse the node anyway and wrap it); and whether it corrected the bias."""
    weight = constant(node.inputs[1])
    if weight is None or weight.dtype != np.float32 or weight.ndim < 2:
        return 0, None, False
    axis = weight_axis(node, weight.ndim)
    bias_index, bias = 2, None
    has_bias = len(node.inputs) > bias_index and node.inputs[bias_index] is not None
    found = constant(node.inputs[bias_index]) if has_bias else None
    if input_scale is not None and node.op_type != "MatMul" and found is not None and (
            (node.op_type != "Gemm" and found.ndim == 1) or _plain_gemm(node, found)):
        bias = found.astype(np.float64)
    floor = None if bias is None else np.abs(bias) / (float(input_scale) * (INT32_MAX // 2))
    values, scale = per_channel_weights(weight, axis, levels, floor)
    corrected = None
    if means is not None and (found is not None or not has_bias):
        shape = [1] * weight.ndim
        shape[axis] = -1
        error = values.astype(np.float64) * scale.reshape(shape) - weight
        corrected = corrected_bias(node, error, means, found)
        if input_scale is not None and (node.op_type == "Conv" or _plain_gemm(node, corrected)):
            bias = corrected
    int32_bias = None
    if bias is not None:
        bias_scale = (input_scale * scale).astype(np.float32)
        steps = np.rint(bias / bias_scale.astype(np.float64))
        if np.abs(steps).max(initial=0) > INT32_MAX:  # cannot happen with the floor; kept as the guard it was
            return 0, (f"its INT32 bias b / (s_x · s_w) would reach {np.abs(steps).max():.3g} (s_x = "
                       f"{input_scale:.3g}), beyond INT32"), False
        int32_bias = (steps.astype(np.int32), bias_scale)
    if corrected is not None:
        set_constant_input(graph, node, bias_index, corrected.astype(np.float32),
                           node.inputs[bias_index].name if has_bias else f"{node.name}.bias")
    _dequantized_constant(graph, node, 1, values, scale, axis, "weight")
    if int32_bias is not None:
        _dequantized_constant(graph, node, bias_index, *int32_bias, 0, "bias")
    return 1, None, corrected is not None


def _bias_as_add(graph: ir.Graph, node: ir.Node) -> None:
    """State the float bias of a quantized product as an Add after it: for a Conv/ConvTranspose or Gemm whose data
    input is dequantized and whose bias input b is a float constant,

        Conv(x, W, b)                 = Add(Conv(x, W), b reshaped to [C, 1, …, 1])   (one 1 per spatial axis)
        Gemm(A, B, C; alpha, beta)    = Add(Gemm(A, B; alpha), beta · C)              (C broadcasts as in Gemm)

    exactly, in any float type. The Add's output keeps the product's name, so per-layer reports still line up.

    Why: ONNX Runtime's WeightBiasQuantization transformer (every level from basic up, so a plain session) rewrites
    a float bias of such a node into round(b / (s_x · s_w)) as INT32, computed in the bias's float type: FP16 float
    parts underflow s_x · s_w and overflow the quotient, and even FP32 rounds b to a grid the file never stated. It
    matches only a bias *input* that is a constant (onnxruntime/core/optimizer/qdq_transformer/
    weight_bias_quantization.cc), so a bias stated as an Add is computed as written. TensorRT fuses an Add of a
    per-channel constant after a Q/DQ convolution into its epilogue as it does a BatchNormalization (TensorRT's
    explicit-quantization guide); OpenVINO reads an ONNX Conv bias as such an Add anyway. An INT32 bias (the `ort`
    flavour's) is left as it is: it already states the integer math."""
    if node.op_type not in ("Conv", "ConvTranspose", "Gemm") or node.domain != "" or len(node.inputs) < 3:
        return
    data, bias_value = node.inputs[0], node.inputs[2]
    producer = data.producer() if data is not None else None
    bias = constant(bias_value)
    if producer is None or producer.op_type != "DequantizeLinear" or bias is None or \
            not np.issubdtype(bias.dtype, np.floating):
        return
    if node.op_type == "Gemm":
        bias = bias * np.asarray(node.attributes.get_float("beta", 1.0), bias.dtype)
        node.attributes.pop("beta", None)
    else:
        ranks = [len(v.shape) for v in (node.outputs[0], data, node.inputs[1]) if v is not None and v.shape is not None]
        if not ranks:
            return
        bias = bias.reshape(-1, *([1] * (ranks[0] - 2)))
    product = node.outputs[0]
    name = product.name
    offset = add_initializer(graph, f"{bias_value.name or node.name}_after", bias)
    node.resize_inputs(2)
    drop_if_unused(graph, bias_value)
    add = ir.node("Add", [product, offset], name=f"{node.name}/bias")
    result = add.outputs[0]
    if product.type is not None:  # its own type and shape objects: the FP16 pass retypes values one by one
        result.type = ir.TensorType(product.dtype)
    if product.shape is not None:
        result.shape = ir.Shape(product.shape)
    for use in list(product.uses()):
        if use.node is not add:
            use.node.replace_input_with(use.idx, result)
    for index, output in enumerate(graph.outputs):
        if output is product:
            graph.outputs[index] = result
    product.name = unique_name(graph, f"{name}_product")
    result.name = name
    graph.insert_after(node, add)


def _plain_gemm(node: ir.Node, bias: np.ndarray | None) -> bool:
    """A Gemm that QGemm can run with an INT32 bias: alpha = beta = 1 and a per-column bias vector."""
    attrs = node.attributes
    return (node.op_type == "Gemm" and bias is not None and bias.ndim == 1
            and attrs.get_float("alpha", 1.0) == 1.0 and attrs.get_float("beta", 1.0) == 1.0)


def _dequantized_constant(graph: ir.Graph, node: ir.Node, index: int, values: np.ndarray, scale: np.ndarray,
                          axis: int, role: str) -> None:
    """Replace the node's constant input `index` by DequantizeLinear(values, scale, 0) along `axis`."""
    old = node.inputs[index]
    base = old.name or f"{node.name}.{role}"
    inputs = [add_initializer(graph, f"{base}_quantized", values), add_initializer(graph, f"{base}_scale", scale),
              add_initializer(graph, f"{base}_zero_point", np.zeros(scale.shape, values.dtype))]
    dequantize = ir.node("DequantizeLinear", inputs, {"axis": axis}, name=f"{node.name}/{role}/DequantizeLinear")
    dequantize.outputs[0].name = unique_name(graph, f"{base}_dequantized")
    dequantize.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)
    dequantize.outputs[0].shape = ir.Shape(values.shape)
    graph.insert_before(node, dequantize)
    node.replace_input_with(index, dequantize.outputs[0])
    drop_if_unused(graph, old)
