"""The choices the quantize stage offers, by name (optimize/precision/qdq.py says what each INT8 one does): the
precision, the flavour of the Q/DQ graph, the weight range (L in W_q = clip(round(W / s_c), −L, L)) and the float
type of what stays unquantized. Names only: the command line lists them without loading the stage."""

from __future__ import annotations

PRECISIONS = ("fp16", "int8", "bf16")
DEFAULT_BATCH_SIZE = 8  # calibration batch size
FLAVOURS = ("trt", "ort")
WEIGHT_LEVELS = {"safe": 64, "full": 127}  # L of each weight range
FLOAT_DTYPES = ("fp16", "fp32")  # the type of the tensors outside Q/DQ (Relu, pooling, float layers, the scales)
DEFAULT_FLOAT_DTYPE = {"trt": "fp16", "ort": "fp32"}  # docs/precision.md says why; ort + fp16 is refused
MIN_MATMUL_DIM = 16  # `trt`: a Gemm/MatMul with N or K below this stays float (Model Optimizer's rule, qdq.py)
INT8_MAX = 127  # symmetric S8: s = amax / INT8_MAX (TensorRT's scales, its calibration cache)
UINT8_MAX = 255  # U8 activations of the `ort` flavour: s = (hi − lo) / UINT8_MAX
INT32_MAX = 2**31 - 1  # the `ort` flavour's INT32 bias: |round(b / (s_x · s_w))| must fit
ZERO_RANGE_SCALE = 1 / INT8_MAX  # a tensor 0 on every calibration sample: any scale represents it exactly
MIN_SCALE = 2.0**-23  # float32's machine epsilon, PyTorch's observers' floor on scales. Smaller scales are
# denormal or near it (kernels that flush denormals divide by 0) and overflow ORT's requantization multipliers
# s_x·s_w/s_y and INT32 biases b/(s_x·s_w): a tensor whose range gives less gets MIN_SCALE, and a warning.


def activation_scale_of(span: float, levels: int) -> tuple[float, str | None]:
    """The scale for an activation whose calibrated range has width `span` on `levels` steps, and, when that is not
    span / levels, why."""
    if not span > 0:
        return ZERO_RANGE_SCALE, f"0 on every calibration sample: scale {ZERO_RANGE_SCALE:.4g}"
    if span / levels < MIN_SCALE:
        return MIN_SCALE, f"calibrated range {span:.3g} gives a scale below {MIN_SCALE:.3g}: scale {MIN_SCALE:.3g}"
    return span / levels, None


def default_weight_range(int8_saturates: bool) -> str:
    """`full` (8-bit weights): on the pretrained EfficientNet-Lite0 and Lite1 it keeps 1–1.5 points of top-1 that
    the 7-bit `safe` range loses (bench/accuracy.md, docs/precision.md). `safe` on a CPU whose int8 dot products
    saturate (x86 without VNNI), for both flavours: there ONNX Runtime's U8×S8 and OpenVINO's kernels compute
    something other than a full-range file (docs/cpus.md), and every file is checked on the CPU that writes it. A
    `trt` file for TensorRT made on such a CPU can ask for `--weight-range full`."""
    return "safe" if int8_saturates else "full"
