"""Streaming calibration: run the float graph batch by batch with every activation exposed, and keep per-tensor
statistics (min, max, |x| histogram) and, per weighted layer, the tap means of its input (bias_correction.py),
whose size does not depend on the number of samples.

The result is `calib.json`: the statistics themselves (so any method can be applied later without re-running the
data), the ranges of the chosen method, the sample count and the sha256 of the model they belong to.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx_ir as ir

from onebyone.optimize.precision.bias_correction import TapMeans, tap_means_of
from onebyone.optimize.precision.histogram import BINS, TensorStatistics
from onebyone.optimize.precision.ranges import METHODS, amax
from onebyone.runtime.bundle.onnx_file import activation_names, exposing, with_types
from onebyone.runtime.bundle.sources import DataSource
from onebyone.runtime.core.errors import UserError, option
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.core.progress import progress

CALIB_FORMAT = "onebyone.calib/2"  # /2: input_means added


@dataclasses.dataclass
class Calibration:
    """Per-tensor statistics of one model over `samples` calibration samples, and the tap means of the input of
    each layer bias correction applies to (node name → float32 array, bias_correction.py; float32 so that
    calib.json holds them exactly and a reused calibration writes the same file)."""

    model_sha256: str
    source: str
    samples: int
    statistics: dict[str, TensorStatistics]
    input_means: dict[str, np.ndarray]
    _ranges: dict[tuple[str, float], dict[str, float]] = dataclasses.field(default_factory=dict, repr=False)

    def ranges(self, method: str, percentile: float) -> dict[str, float]:
        """amax per tensor for a calibration method, computed once per (method, percentile): the entropy search
        takes tens of milliseconds per tensor."""
        if method not in METHODS:
            raise UserError(f"unknown calibration method {method!r}; valid: {', '.join(METHODS)}")
        key = (method, percentile)
        if key not in self._ranges:
            self._ranges[key] = {name: float(amax(stats, method, percentile))  # one type, whatever `top` holds
                                 for name, stats in self.statistics.items()}
        return self._ranges[key]

    def save(self, path: Path, method: str, percentile: float) -> None:
        """Write calib.json: a readable header, then one line per tensor (min, max, amax, histogram)."""
        ranges = self.ranges(method, percentile)
        header = {"format": CALIB_FORMAT, "model_sha256": self.model_sha256, "source": self.source,
                  "samples": self.samples, "method": method, "percentile": percentile, "bins": BINS}
        lines = [f"  {json.dumps(key)}: {json.dumps(value)}," for key, value in header.items()]
        tensors = [f"    {json.dumps(name)}: " + json.dumps(
            {"min": stats.minimum, "max": stats.maximum, "amax": ranges[name], "top": stats.top,
             "histogram": stats.counts.tolist()}) for name, stats in self.statistics.items()]
        # float32's shortest repr (str of a numpy float32) loads back bit-exact
        means = [f"    {json.dumps(name)}: " + json.dumps({"shape": list(values.shape), "values": [
            float(str(v)) for v in values.ravel()]}) for name, values in self.input_means.items()]
        with atomic_write(path) as tmp:
            tmp.write_text("{\n" + "\n".join(lines) + '\n  "tensors": {\n' + ",\n".join(tensors) + "\n  },\n"
                           '  "input_means": {\n' + ",\n".join(means) + "\n  }\n}\n")

    @classmethod
    def load(cls, path: Path) -> Calibration:
        try:
            raw = json.loads(path.read_text())
            if raw.get("format") != CALIB_FORMAT:
                raise ValueError(f"format is {raw.get('format')!r}, expected {CALIB_FORMAT!r}")
            statistics = {name: TensorStatistics(minimum=entry["min"], maximum=entry["max"], top=entry["top"],
                                                 counts=np.asarray(entry["histogram"], dtype=np.int64))
                          for name, entry in raw["tensors"].items()}
            if any(len(stats.counts) != BINS for stats in statistics.values()):
                raise ValueError(f"histograms must have {BINS} bins")
            means = {name: np.asarray(entry["values"], dtype=np.float32).reshape(entry["shape"])
                     for name, entry in raw["input_means"].items()}
            return cls(model_sha256=raw["model_sha256"], source=raw["source"], samples=int(raw["samples"]),
                       statistics=statistics, input_means=means)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise UserError(f"{path} is not a onebyone calibration file ({err}); re-run calibration with "
                            f"{option('calib', 'DATA')}") from None


def collect(model: ir.Model, model_sha256: str, data: DataSource, batch_size: int) -> Calibration:
    """Run `data` through ONNX Runtime in batches and accumulate statistics for every activation of `model`.

    Peak memory is one batch of every activation plus fixed-size histograms, whatever the number of samples.
    """

    if len(model.graph.inputs) != 1:
        raise UserError(f"calibration feeds one input; the model has {len(model.graph.inputs)}")
    typed = with_types(model)
    input_name = typed.graph.inputs[0].name
    names = activation_names(typed)
    computed = [name for name in names if name != input_name]
    session = ort_session(exposing(typed, computed), "basic")
    statistics = {name: TensorStatistics() for name in names}
    layers = tap_means_of(typed)
    readers: dict[str, list[TapMeans]] = {}
    for tensor, means in layers.values():
        readers.setdefault(tensor, []).append(means)
    seen = 0
    with progress() as bar:
        task = bar.add_task(f"calibrating {len(names)} tensors", total=data.count)
        for batch in data.batches(batch_size):
            outputs = zip(computed, session.run(computed, {input_name: batch}), strict=True)
            for name, values in [(input_name, batch), *outputs] if input_name in statistics else outputs:
                try:
                    statistics[name].update(values)
                    for means in readers.get(name, ()):
                        means.update(values)
                except ValueError:
                    raise UserError(f"tensor {name!r} holds NaN or Inf on calibration samples "
                                    f"{seen}…{seen + len(batch) - 1}: the model overflows on this data; "
                                    "fix its weights or inputs before quantizing") from None
            seen += len(batch)
            bar.update(task, advance=len(batch))
    return Calibration(model_sha256=model_sha256, source=data.description, samples=seen, statistics=statistics,
                       input_means={node: means.means.astype(np.float32) for node, (_, means) in layers.items()
                                    if means.count})
