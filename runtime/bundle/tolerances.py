"""Every bound onebyone holds an artifact to, in one table: how close to its reference is close enough.

A candidate c passes against a reference r (d = c − r, over every element of every output, N samples) when
    max|d| ≤ max_rel · max|r|                        always;
    ‖d‖ / ‖r‖ ≤ max_rel_l2                           when set;
    cos(c, r) ≥ min_cosine                           when set (flattened outputs);
    top-1 agreement ≥ min_top1                       when set (class scores, N × classes);
    top-1 accuracy ≥ min_accuracy_share · reference's  when set and the data has labels, within chance (below);
    per-pixel argmax agreement ≥ min_top1, mIoU ≥ reference's − max_miou_drop  segmentation (the latter on labels);
and, with several outputs (or one output at several input sizes), each output alone meets the elementwise bounds;
for per-layer localisation, a layer whose rel-L2 exceeds layer_rel_l2 has diverged.

Rows (docs/parity.md says how the numbers were chosen):
- fp32, fp16, int8 (and bf16, below): an artifact of that precision against the torch model. FP32 must be the same
  network to rounding; FP16 to half precision; INT8 may move logits but must keep the direction of the output vector and
  almost every decision. The manifest records the row an artifact was checked against.
- int8's cosine bound sits below every default INT8 file of the pretrained EfficientNet-Lite0/1 measured on real
  ImageNet images and above the uncorrected 7-bit-weight files (docs/precision.md, "INT8 defaults"; the values are
  in bench/accuracy.md).
- The accuracy share is the field's yardstick: MLPerf Inference's closed division holds an INT8 ResNet-50 to 99% of
  its FP32 top-1 on ImageNet; FP16 is held to 99.9% (docs/precision.md has the measured values on real ImageNet
  images, bench/accuracy.md). On N images a candidate fails it when it gets more than 2√d images fewer right than
  share × the reference's count, d being the images whose top-1 the candidate changed: with no true change the
  paired difference in correct images has standard deviation √d, so a shortfall within 2√d is what chance alone
  gives (on a few hundred images one image is several tenths of a point). Parity prints the exact share and the 95%
  interval beside it.
- int8-kernel: an engine against the same INT8 file's exact Q/DQ math (runtime/parity/kernel_check.py), not torch:
  only rounding may differ (more on OpenVINO, where a rounding that differs before a QuantizeLinear moves values
  across a quantization step), and the bound sits between what correct engines and saturating int8 kernels measure
  (docs/openvino.md, docs/cpus.md). It bounds no decisions (top-1 near ties is parity's business
  against torch).
- bf16: an FP32 file run with OpenVINO's BF16 inference hint, against torch: the fp16 row scaled by the unit
  roundoff, 2⁻⁸ for BF16's 8-bit significand against FP16's 2⁻¹¹ — elementwise and per-layer bounds × 8, 1 − cosine
  × 64 (it grows with the square of the error) rounded, top-1 agreement a little looser (docs/openvino.md has the
  values measured on digits and ResNet-50).
- rewrite: an FP32 graph pass, the graph before against the graph after (optimize --verify).

A golden check (export, optimize, quantize, build, verify, the self-check on open) runs a handful of fixed samples,
too few to bound decisions, so it applies the elementwise bound only (`Tolerance.golden`); parity applies the row.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Tolerance:
    max_rel: float
    max_rel_l2: float | None = None  # None: not bounded
    min_cosine: float | None = None
    min_top1: float | None = None
    layer_rel_l2: float | None = None
    min_accuracy_share: float | None = None  # candidate top-1 ≥ share × reference top-1, on labelled data
    max_miou_drop: float | None = None  # segmentation: candidate mIoU ≥ reference mIoU − this, on per-pixel labels

    def golden(self) -> Tolerance:
        """The bound a golden check applies: max|d| ≤ max_rel · max|r| only."""
        return Tolerance(max_rel=self.max_rel)

    def as_record(self) -> dict[str, float]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Tolerance:
        """Also reads manifests written before this table, which recorded `{"rel_max_abs": max_rel}`."""
        if "rel_max_abs" in record:
            record = {"max_rel": record["rel_max_abs"], **{k: v for k, v in record.items() if k != "rel_max_abs"}}
        return cls(**record)


TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_rel=1e-4, min_cosine=0.99999, min_top1=1.0, layer_rel_l2=1e-4),
    "fp16": Tolerance(max_rel=1e-2, min_cosine=0.9999, min_top1=0.99, layer_rel_l2=1e-2, min_accuracy_share=0.999,
                      max_miou_drop=0.002),
    "bf16": Tolerance(max_rel=8e-2, min_cosine=0.995, min_top1=0.97, layer_rel_l2=8e-2),
    "int8": Tolerance(max_rel=0.25, min_cosine=0.98, min_top1=0.95, layer_rel_l2=0.1, min_accuracy_share=0.99,
                      max_miou_drop=0.01),
    "int8-kernel": Tolerance(max_rel=0.1, max_rel_l2=0.05, min_cosine=0.998),
    "rewrite": Tolerance(max_rel=1e-5),
}
