"""Bias correction (optimize/precision/bias_correction.py): the tap means streamed over calibration batches give
exactly the mean output error of rounded weights, for every Conv geometry and Gemm orientation; and a corrected
layer's quantized outputs keep the float layer's per-channel means, where uncorrected ones drift."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
import torch
from onnx import helper

from onebyone.optimize.precision.bias_correction import output_shift, tap_means_of
from onebyone.optimize.precision.calibrate import collect
from onebyone.optimize.precision.qdq import TensorRange, insert_qdq
from onebyone.optimize.verify import run_model
from onebyone.runtime.bundle.sources import DataSource
from tests.graphs import model, tensor_input

CONVS = {  # name → (input shape, weight shape, Conv attributes)
    "3x3 stride 2 asymmetric pads": ((2, 4, 9, 11), (6, 4, 3, 3), {"strides": [2, 2], "pads": [1, 0, 0, 1]}),
    "depthwise 5x5": ((2, 6, 10, 10), (6, 1, 5, 5), {"group": 6, "pads": [2, 2, 2, 2]}),
    "grouped dilated": ((2, 4, 12, 12), (6, 2, 3, 3), {"group": 2, "dilations": [2, 3], "pads": [2, 3, 2, 3]}),
    "1x1": ((2, 8, 5, 7), (3, 8, 1, 1), {}),
    "1-D": ((2, 3, 17), (5, 3, 4), {"strides": [3], "pads": [1, 2]}),
}


def conv_model(input_shape: tuple[int, ...], weight: np.ndarray, attributes: dict,
               bias: np.ndarray | None) -> ir.Model:
    inputs = ["x", "w"] + (["b"] if bias is not None else [])
    node = helper.make_node("Conv", inputs, ["y"], name="conv", **attributes)
    initializers = {"w": weight} | ({"b": bias} if bias is not None else {})
    return model([node], [tensor_input("x", list(input_shape))], ["y"], initializers)


def streamed_means(m: ir.Model, batches: list[np.ndarray]) -> np.ndarray:
    (tensor, means), = tap_means_of(m).values()
    assert tensor == "x"
    for batch in batches:
        means.update(batch)
    return means.means


@pytest.mark.parametrize("name", CONVS)
def test_tap_means_give_the_mean_output_error_of_rounded_weights(name, rng):
    input_shape, weight_shape, attributes = CONVS[name]
    weight = rng.normal(size=weight_shape).astype(np.float32)
    error = np.round(weight * 2) / 2 - weight  # a coarse rounding: large, structured errors
    batches = [rng.uniform(0, 1, input_shape).astype(np.float32) + 0.5 * rng.random() for _ in range(3)]
    m = conv_model(input_shape, weight, attributes, None)
    shift = output_shift(next(iter(m.graph)), error, streamed_means(m, batches))
    rank = len(weight_shape) - 2
    pads = attributes.get("pads", [0] * 2 * rank)
    x = torch.nn.functional.pad(torch.from_numpy(np.concatenate(batches)).double(),
                                [p for a in reversed(range(rank)) for p in (pads[a], pads[a + rank])])
    convolve = (torch.nn.functional.conv1d, torch.nn.functional.conv2d)[rank - 1]
    y = convolve(x, torch.from_numpy(error).double(), stride=attributes.get("strides", 1),
                 dilation=attributes.get("dilations", 1), groups=attributes.get("group", 1))
    expected = y.mean(dim=(0, *range(2, 2 + rank))).numpy()
    np.testing.assert_allclose(shift, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm_shift_follows_trans_b_and_alpha(trans_b, rng):
    weight = rng.normal(size=(5, 7) if trans_b else (7, 5)).astype(np.float32)
    error = rng.normal(size=weight.shape) * 0.01
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="gemm", transB=trans_b, alpha=0.5, beta=2.0)
    m = model([node], [tensor_input("x", [4, 7])], ["y"], {"w": weight, "b": np.zeros(5)})
    batches = [rng.normal(1.0, 1.0, (4, 7)).astype(np.float32) for _ in range(2)]
    shift = output_shift(next(iter(m.graph)), error, streamed_means(m, batches))
    x = np.concatenate(batches).astype(np.float64)
    expected = 0.5 * (x @ (error.T if trans_b else error)).mean(axis=0)
    np.testing.assert_allclose(shift, expected, rtol=1e-9)


@pytest.mark.parametrize("flavour", ["trt", "ort"])
@pytest.mark.parametrize("has_bias", [True, False])
def test_corrected_layer_keeps_the_float_channel_means(flavour, has_bias, rng):
    """A depthwise 3x3 on a non-negative input (as after ReLU), safe 7-bit weights: on the calibration data the
    per-channel mean of the quantized layer's outputs stays within 1/5 of the uncorrected layer's drift (what is
    left comes from the input's own rounding) — with a bias added where the layer had none, INT32 in `ort`."""
    channels, shape = 16, (8, 16, 12, 12)
    weight = rng.normal(size=(channels, 1, 3, 3)).astype(np.float32)
    weight[:, :, 0, 0] *= 6  # a large corner tap: the others round coarsely
    bias = rng.normal(size=channels).astype(np.float32) if has_bias else None
    float_model = conv_model(("n", *shape[1:]), weight, {"group": channels, "pads": [1, 1, 1, 1]}, bias)
    inputs = rng.uniform(0, 1, shape).astype(np.float32) ** 0.5
    calibration = collect(float_model, "", DataSource.of_arrays("test", inputs, None), 4)
    ranges = {n: TensorRange(float(np.abs(inputs).max()) if n == "x" else s.maximum, s.minimum, s.maximum)
              for n, s in calibration.statistics.items()}
    reference = run_model(float_model, {"x": inputs})["y"]
    drift = {}
    for corrected in (False, True):
        quantized = ir.from_proto(ir.to_proto(float_model))
        report = insert_qdq(quantized, ranges, flavour, set(), "safe",
                            calibration.input_means if corrected else None)
        assert report.bias_corrected == int(corrected) and report.weights == 1
        output = run_model(quantized, {"x": inputs})["y"]
        assert output.shape == reference.shape and np.isfinite(output).all()
        drift[corrected] = np.abs((output - reference).mean(axis=(0, 2, 3))).max()
    assert drift[True] < 0.2 * drift[False], drift
