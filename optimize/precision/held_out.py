"""Held-out real samples for the quantize-time check, when the bundle's golden inputs are random.

A bundle exported without `--data` has N(0,1) golden inputs, which an image model never sees; its INT8 file's error
on them says little about its error on images (pretrained EfficientNet-Lite2: 0.26–0.27 × max|ref| on noise, against
0.024–0.036 on images). When quantize calibrates on real data it therefore keeps the last HELD_OUT samples of that
data out of the calibration, runs them through the FP32 source file — which passed its own golden check against
torch — and judges the new file on those inputs and outputs instead. They are saved beside the file as its own golden
samples (`<source>.held-out.golden.npz`, recorded as `ArtifactRecord.golden`; a later quantize from the
calib.json reuses them), so verify, the kernel check, serve's self-check
and build judge it on them too. docs/precision.md ("Judged on real inputs") states the decision.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from onebyone.runtime.bundle.golden import Golden, reference_session
from onebyone.runtime.bundle.preprocess import resized
from onebyone.runtime.bundle.sources import DataSource
from onebyone.runtime.parity.check import run_in_batches

HELD_OUT = 8  # samples: a fixed-batch model holds out one batch instead


def held_out_name(source: Path) -> str:
    """The file of golden samples held out of `source`'s calibration: one per source file, which every file
    quantized from it (FP16, both INT8 flavours, from the data or from its calib.json) is judged on."""
    return f"{source.name.removesuffix('.onnx')}.held-out.golden.npz"


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """The calibration samples and the samples kept out of them (None when the data is too small to spare any)."""

    calibration: DataSource
    held_out: DataSource | None


def split_off(data: DataSource, wanted: int | None, batch: int | None) -> HeldOut:
    """Hold out the last HELD_OUT samples of `data` (`batch` of them for a fixed-batch model) and calibrate on at
    most `wanted` (all when None) of the rest; nothing is held out when fewer than twice that many samples exist."""
    count = batch or HELD_OUT
    if data.count < 2 * count:
        return HeldOut(_first(data, wanted), None)
    rest = data.count - count
    held = DataSource(f"the last {count} of {data.description}, held out of the calibration", count,
                      lambda start, stop: data.read(rest + start, rest + stop))
    return HeldOut(_first(data, min(wanted or rest, rest)), held)


def _first(data: DataSource, wanted: int | None) -> DataSource:
    if wanted is None or wanted >= data.count:
        return data
    return dataclasses.replace(data, count=wanted, description=f"the first {wanted} of {data.description}",
                               labels=None if data.labels is None else data.labels[:wanted])


def held_out_golden(source: Path, held: DataSource, bundle_golden: Golden, path: Path) -> Golden:
    """Golden samples of `held` at every input size the bundle's golden covers, with the FP32 `source` file's
    outputs (ONNX Runtime, nothing fused) as the reference; saved to `path`."""
    session = reference_session(source)
    input_name = next(iter(bundle_golden.inputs))
    samples = held.all()
    cases = []
    for case in bundle_golden.cases():
        size = next(iter(case.inputs.values())).shape[2:]
        inputs = samples if samples.shape[2:] == size else resized(samples, tuple(size))
        cases.append(Golden({input_name: inputs}, run_in_batches(session, input_name, inputs)))
    golden = dataclasses.replace(cases[0], more=tuple(cases[1:]))
    golden.save(path)
    return golden
