"""The quantize stage: an FP32 ONNX file in, one file out with its precision written in — FP16 types, calibrated INT8
Q/DQ (either flavour), or OpenVINO's BF16 hint in its metadata — checked against the bundle's golden outputs and
recorded in its manifest. `onebyone quantize` and `onebyone.quantize()` are shells over `quantize()` here.

What each option does is in docs/precision.md; the algebra of each step is in its module (calibrate, ranges, qdq,
bias_correction, sensitivity, fp16).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from onebyone.optimize.artifact import Companion, write_artifact
from onebyone.optimize.precision.flavours import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FLOAT_DTYPE,
    FLAVOURS,
    FLOAT_DTYPES,
    PRECISIONS,
    WEIGHT_LEVELS,
    default_weight_range,
)
from onebyone.optimize.precision.ranges import DEFAULT_METHOD, DEFAULT_PERCENTILE, METHODS
from onebyone.optimize.precision.trt_cache import DEFAULT_TRT_VERSION, write_cache
from onebyone.runtime.bundle.preprocess import Preprocess
from onebyone.runtime.bundle.sources import SOURCES_HELP, DataSource, open_source
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core import cpu
from onebyone.runtime.core.errors import CheckFailed, UserError, option
from onebyone.runtime.core.files import sha256_file, staging_dir
from onebyone.runtime.core.version import installed_tensorrt
from onebyone.runtime.preflight.operators import DEFAULT as DEFAULT_TENSORRT

if TYPE_CHECKING:
    import numpy as np
    import onnx_ir as ir

    from onebyone.optimize.precision.calibrate import Calibration
    from onebyone.optimize.precision.qdq import TensorRange
    from onebyone.runtime.parity.check import Engine
    from onebyone.runtime.parity.kernel_check import KernelCheck

FALLBACK_SAMPLES = 256  # the accuracy fallback evaluates every candidate on at most this many calibration samples


@dataclasses.dataclass(frozen=True)
class QuantizeOptions:
    """What to write. The defaults are the CLI's (`onebyone quantize --help` says the same per flag)."""

    precision: str  # fp16 | int8 | bf16
    output: Path | None = None  # default: INPUT.fp16.onnx / INPUT.int8-FLAVOUR.onnx / INPUT.bf16.onnx
    calib: str | None = None  # a data source (sources.SOURCES_HELP) or a calib.json made for this model
    calib_samples: int | None = None  # at most this many calibration samples (None: all; random: 64)
    batch_size: int = DEFAULT_BATCH_SIZE  # calibration batch size
    method: str = DEFAULT_METHOD  # INT8 range method (ranges.METHODS)
    percentile: float = DEFAULT_PERCENTILE  # for method "percentile"
    flavour: str = "trt"  # trt: symmetric INT8 for TensorRT; ort: U8 activations for ONNX Runtime
    weight_range: str | None = None  # full | safe; None: full, or safe on a CPU without VNNI
    float_dtype: str | None = None  # int8: type of what stays float; None: fp16 for trt, fp32 for ort
    bias_correction: bool = True  # int8: take each layer's mean weight-rounding error out of its bias
    exclude: tuple[str, ...] = ()  # int8: node names left unquantized
    keep_fp32: tuple[str, ...] = ()  # node names kept FP32
    fp16_io: bool = False  # fp16 graph inputs/outputs
    accuracy_budget: float | None = None  # int8: points of top-1 (per-pixel) changes, worst output, calibration data
    auto_exclude: int | None = None  # int8: keep the K most sensitive layers float
    sensitivity: bool = False  # int8: rank every weighted layer (recorded)
    trt_version: str | None = None  # the legacy cache's header; None: the installed TensorRT, else the default

    def settled(self) -> QuantizeOptions:
        """These options with every default that depends on others or on this machine filled in, after checking
        that they make sense together."""
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; valid: {', '.join(PRECISIONS)}")
        if self.flavour not in FLAVOURS:
            raise UserError(f"unknown flavour {self.flavour!r}; valid: {', '.join(FLAVOURS)}")
        if self.method not in METHODS:
            raise UserError(f"unknown calibration method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.precision == "int8" and not self.calib:
            raise UserError(f"{option('precision', 'int8')} needs calibration data: {option('calib', 'DATA')} "
                            f"({SOURCES_HELP})")
        if not 0 < self.percentile <= 100:
            raise UserError(f"{option('percentile', self.percentile)} is outside (0, 100]")
        if self.wants_sensitivity and (self.precision != "int8" or Path(self.calib).suffix == ".json"):
            raise UserError(f"{option('sensitivity')}, {option('accuracy_budget')} and {option('auto_exclude')} "
                            f"apply to {option('precision', 'int8')} with calibration data ({option('calib', 'DATA')}, "
                            "not a calib.json): they measure errors on that data")
        if self.accuracy_budget is not None and self.accuracy_budget < 0:
            raise UserError(f"{option('accuracy_budget', self.accuracy_budget)} is negative")
        if self.accuracy_budget is not None and self.auto_exclude is not None:
            raise UserError(f"{option('accuracy_budget')} and {option('auto_exclude')} are two ways to choose the "
                            "float layers: give one")
        if self.precision != "int8":
            if self.float_dtype is not None:
                raise UserError(f"{option('float_dtype')} applies to {option('precision', 'int8')} (an fp16 file is "
                                "FP16 throughout)")
            return dataclasses.replace(self, trt_version=self.trt_version or installed_tensorrt() or
                                       DEFAULT_TRT_VERSION)
        if self.float_dtype is not None and self.float_dtype not in FLOAT_DTYPES:
            raise UserError(f"unknown float dtype {self.float_dtype!r}; valid: {', '.join(FLOAT_DTYPES)}")
        if self.weight_range is not None and self.weight_range not in WEIGHT_LEVELS:
            raise UserError(f"unknown weight range {self.weight_range!r}; valid: {', '.join(WEIGHT_LEVELS)}")
        settled = dataclasses.replace(
            self, float_dtype=self.float_dtype or DEFAULT_FLOAT_DTYPE[self.flavour],
            weight_range=self.weight_range or default_weight_range(cpu.this_cpu().int8_saturates),
            trt_version=self.trt_version or installed_tensorrt() or DEFAULT_TRT_VERSION)
        if settled.flavour == "ort" and settled.float_dtype == "fp16":
            raise UserError(f"{option('flavour', 'ort')} with {option('float_dtype', 'fp16')}: ONNX Runtime's CPU "
                            f"kernels fuse only FP32 Q/DQ, so the ort file would run unfused; use "
                            f"{option('float_dtype', 'fp32')}, or {option('flavour', 'trt')} for FP16 float parts")
        if settled.fp16_io and settled.float_dtype != "fp16":
            raise UserError(f"{option('fp16_io')} needs FP16 float parts: {option('float_dtype', 'fp16')} "
                            f"({option('flavour', 'trt')})")
        return settled

    @property
    def wants_sensitivity(self) -> bool:
        return self.sensitivity or self.accuracy_budget is not None or self.auto_exclude is not None


@dataclasses.dataclass
class QuantizeResult:
    """What `quantize()` wrote and found."""

    output: Path
    precision: str
    summary: str  # the golden check's verdict line (or "written (not in a bundle …)")
    record: dict[str, Any]  # what the manifest records as made_by: options, report, calibration, fallback
    messages: list[str]  # what happened on the way, in order (a warning starts with "warning: ")
    in_bundle: bool  # the output was checked against a bundle's golden outputs and recorded in its manifest
    kernel_checks: dict[str, KernelCheck] = dataclasses.field(default_factory=dict)  # INT8 in a bundle: per engine
    auto_engine: str | None = None  # INT8 in a bundle: the engine `auto` now opens it on


def default_output(source: Path, precision: str, flavour: str) -> Path:
    suffix = precision if precision in ("fp16", "bf16") else f"int8-{flavour}"
    return source.with_name(f"{source.name.removesuffix('.onnx')}.{suffix}.onnx")


def node_names(names: tuple[str, ...], model: ir.Model) -> set[str]:
    wanted = {name.strip() for name in names if name.strip()}
    unknown = sorted(wanted - {node.name for node in model.graph})
    if unknown:
        examples = ", ".join(n.name for n in model.graph if n.op_type == "Conv")[:200]
        raise UserError(f"no node named {', '.join(unknown)} in the model; Conv nodes are named like: {examples}")
    return wanted


def in_bundle(path: Path) -> bool:
    from onebyone.runtime.bundle.manifest import manifest_path, read_manifest

    return manifest_path(path.parent).is_file() and path.name in read_manifest(path.parent).artifacts


def quantize(source: Path, options: QuantizeOptions, bf16_engine: Engine | None = None,
             consumers: tuple[Engine, ...] = ()) -> QuantizeResult:
    """Write `source` at `options.precision`. `bf16_engine`: what runs a bf16 file's golden check (OpenVINO with its
    BF16 hint; the caller has checked that this CPU has BF16 instructions). `consumers`: stock configurations the
    golden check also runs the file in, beyond ONNX Runtime's (OpenVINO's defaults, where it is installed)."""
    from onebyone.runtime.bundle.onnx_file import load_model, with_types

    options = options.settled()
    output = options.output or default_output(source, options.precision, options.flavour)
    messages: list[str] = []
    if options.precision == "bf16":
        return _to_bf16(source, output, options, bf16_engine)
    model = with_types(load_model(source))
    exclude, keep = node_names(options.exclude, model), node_names(options.keep_fp32, model)
    if options.precision == "int8" and any(node.domain == "com.microsoft" for node in model.graph):
        raise UserError(f"{source} holds ONNX Runtime contrib ops (from `optimize --target ort`), which cannot "
                        "be quantized; quantize an export or an `optimize --target trt` (or generic) output")
    with staging_dir(output.parent) as stage:
        calibrated = _calibration(source, options, model, output, stage, messages)
        calibration = calibrated.calibration
        if options.precision == "fp16":
            made_by = _to_fp16(model, calibration, keep, options.fp16_io, messages)
        else:
            made_by = _to_int8(model, calibration, options, exclude, keep, calibrated.data, messages)
        made_by = {"stage": "quantize", "from": source.name, "precision": options.precision} | made_by
        if calibration is not None:
            made_by["calibration"] = {"source": calibration.source, "samples": calibration.samples,
                                      "file": calibrated.file.name}
        judged_on = _judged_on(source, output, calibrated.held_out, stage, messages)
        # made for TensorRT: FP16 and `trt` INT8 files, unless the source holds ONNX Runtime contrib ops (an `ort`
        # optimize output: ONNX Runtime's file, which TensorRT cannot parse)
        standard = all(node.domain in ("", "ai.onnx") for node in model.graph)
        for_tensorrt = standard and (options.precision == "fp16" or options.flavour == "trt")
        summary = write_artifact(model, source, output, options.precision, TOLERANCES[options.precision], made_by,
                                 calibrated.companions, golden=judged_on, consumers=consumers,
                                 tensorrt=DEFAULT_TENSORRT if for_tensorrt else ())
    return QuantizeResult(output, options.precision, summary, made_by, messages, in_bundle(output))


def _to_bf16(source: Path, output: Path, options: QuantizeOptions, engine: Engine | None) -> QuantizeResult:
    """The FP32 graph with `onebyone.precision = bf16` in its metadata: OpenVINO compiles it with its BF16 inference
    hint (runtime/sessions/openvino_backend.py); checked by `engine` against the golden torch outputs with the bf16
    row of the tolerance table."""
    from onebyone.runtime.bundle.manifest import PRECISION_KEY
    from onebyone.runtime.bundle.onnx_file import graph_precision, load_model

    if engine is None:
        raise UserError(f"{option('precision', 'bf16')} is checked on OpenVINO: use onebyone.stages.quantize or the "
                        "CLI, which open it")
    if options.calib or options.exclude or options.keep_fp32 or options.fp16_io:
        unused = ", ".join(option(name) for name in ("calib", "exclude", "keep_fp32", "fp16_io"))
        raise UserError(f"{option('precision', 'bf16')} takes none of {unused}: BF16 is OpenVINO's setting for the "
                        "whole FP32 graph")
    model = load_model(source)
    if (found := graph_precision(model)) != "fp32":
        raise UserError(f"{source} is {found}; {option('precision', 'bf16')} takes an FP32 model (an export or "
                        "optimize output)")
    model.metadata_props[PRECISION_KEY] = "bf16"
    made_by = {"stage": "quantize", "from": source.name, "precision": "bf16", "engine": "openvino",
               "inference_precision_hint": "bf16"}
    summary = write_artifact(model, source, output, "bf16", TOLERANCES["bf16"], made_by, engine=engine)
    return QuantizeResult(output, "bf16", summary, made_by, [], in_bundle(output))


def _calib_path(source: Path, output: Path) -> Path:
    return output.parent / f"{source.name.removesuffix('.onnx')}.calib.json"


@dataclasses.dataclass(frozen=True)
class Calibrated:
    """The calibration to use, the calib.json it lives in, the files to publish with the output (calib.json and the
    TensorRT cache, when this run calibrated), the data it was calibrated on (None for a calib.json), and the real
    samples held out of that data to judge the output on (held_out.py; None when the bundle's golden inputs are
    data already, or the data is not real)."""

    calibration: Calibration | None = None
    file: Path | None = None
    companions: list[Companion] = dataclasses.field(default_factory=list)
    data: DataSource | None = None
    held_out: DataSource | None = None


def _calibration(source: Path, options: QuantizeOptions, model: ir.Model, output: Path, stage: Path,
                 messages: list[str]) -> Calibrated:
    from onebyone.optimize.precision.calibrate import Calibration, collect
    from onebyone.optimize.precision.held_out import split_off
    from onebyone.runtime.bundle.onnx_file import check_sizes, nominal_shape

    if not options.calib:
        return Calibrated()
    model_sha256 = sha256_file(source)
    calib_file = Path(options.calib)
    if calib_file.suffix == ".json" and calib_file.is_file():
        calibration = Calibration.load(calib_file)
        if calibration.model_sha256 != model_sha256:
            raise UserError(f"{calib_file} was made for another model (sha256 {calibration.model_sha256[:12]}…, "
                            f"{source.name} is {model_sha256[:12]}…); calibrate this one with "
                            f"{option('calib', 'DATA')}")
        messages.append(f"calibration: {calib_file} ({calibration.samples} samples of {calibration.source})")
        return Calibrated(calibration, calib_file)
    graph_input = model.graph.inputs[0]
    sample_shape = tuple(d if isinstance(d, int) else None for d in graph_input.shape[1:])
    preprocess = model.metadata_props.get("onebyone.preprocess")
    nominal = nominal_shape(model)
    hold_out = _golden_is_random(source, output)
    data = open_source(str(options.calib), sample_shape,
                       Preprocess.from_dict(json.loads(preprocess)) if preprocess else None,
                       None if hold_out else options.calib_samples, graph_input.name,
                       nominal=tuple(nominal) if nominal else None, random_samples=options.calib_samples or 64)
    held = None
    if hold_out and not data.smoke_only:
        batch = graph_input.shape[0] if isinstance(graph_input.shape[0], int) else None
        split = split_off(data, options.calib_samples, batch)
        data, held = split.calibration, split.held_out
        if held is None:
            messages.append(f"warning: {data.description} is too small to hold samples out of the calibration; the "
                            "file is checked on the bundle's random golden inputs")
    if len(sizes := check_sizes(model)) > 1:  # a dynamic H×W: ranges over every size it is checked at
        data = data.at_sizes(sizes)
    if data.smoke_only:
        messages.append(f"warning: calibrating on {data.description}")
    kept = _calib_path(source, output)
    if (reused := _same_calibration(kept, model_sha256, data)) is not None:
        messages.append(f"calibration: {kept} (its {reused.samples} samples of {reused.source}: this model, this "
                        "data)")
        return Calibrated(reused, kept, [], data, held)
    calibration = collect(model, model_sha256, data, options.batch_size)
    messages.append(f"calibration: {calibration.samples} samples of {calibration.source}, "
                    f"{len(calibration.statistics)} tensors")
    calib_json = stage / kept.name
    calibration.save(calib_json, options.method, options.percentile)
    cache = calib_json.with_name(calib_json.name.removesuffix(".json") + ".cache")
    write_cache(cache, calibration.ranges(options.method, options.percentile), options.trt_version)
    companions = [Companion(calib_json, "calibration"), Companion(cache, "tensorrt-calibration-cache")]
    return Calibrated(calibration, kept, companions, data, held)


def _golden_is_random(source: Path, output: Path) -> bool:
    """Whether the output will be checked against a bundle's golden samples that are generated noise."""
    from onebyone.runtime.bundle.manifest import read_manifest

    return in_bundle(source) and output.parent.resolve() == source.parent.resolve() and \
        read_manifest(source.parent).golden_is_random()


def _judged_on(source: Path, output: Path, held: DataSource | None, stage: Path,
               messages: list[str]) -> Companion | None:
    """The held-out golden samples the output is checked on (staged in `stage`): made from `held`, or — quantizing
    from a calib.json — the ones an earlier calibration of `source` on real data held out; None when there are none
    (the bundle's golden inputs are data, or no real samples were ever held out)."""
    from onebyone.optimize.precision.held_out import held_out_golden, held_out_name
    from onebyone.runtime.bundle.golden import Golden
    from onebyone.runtime.bundle.manifest import read_manifest

    bundle = source.parent
    path = stage / held_out_name(source)
    if held is not None:
        held_out_golden(source, held, Golden.load(bundle / read_manifest(bundle).golden_of(source.name)), path)
        messages.append(f"checked on {held.description}, against {source.name}: the bundle's golden inputs are "
                        "random noise, which this model never sees")
    elif _golden_is_random(source, output) and path.name in read_manifest(bundle).artifacts:
        shutil.copyfile(bundle / path.name, path)
        messages.append(f"checked on {path.name}, the real samples an earlier calibration of {source.name} held out, "
                        "against it: the bundle's golden inputs are random noise")
    else:
        return None
    return Companion(path, "golden")


def _same_calibration(path: Path, model_sha256: str, data: DataSource) -> Calibration | None:
    """The calibration already beside the output when it was made for this model on this data (same source, same
    number of samples): statistics do not depend on the flavour or method, so both INT8 flavours share one run."""
    from onebyone.optimize.precision.calibrate import Calibration

    if not path.is_file():
        return None
    try:
        calibration = Calibration.load(path)
    except UserError:
        return None  # unreadable or an older format: calibrate again and replace it
    same = (calibration.model_sha256, calibration.source, calibration.samples) == (model_sha256, data.description,
                                                                                    data.count)
    return calibration if same else None


def _to_fp16(model: ir.Model, calibration: Calibration | None, keep: set[str], fp16_io: bool,
             messages: list[str]) -> dict:
    from onebyone.optimize.precision.fp16 import convert_to_fp16

    amax = calibration.ranges("minmax", 100.0) if calibration else None
    report = convert_to_fp16(model, amax, keep, fp16_io)
    messages.append(f"fp16: {report.fp16_nodes} nodes in FP16, {len(report.fp32_nodes)} kept FP32, "
                    f"{report.casts} casts" + ("" if calibration else "  (activation ranges unchecked: no --calib)"))
    messages += [f"  FP32 {name}: {reason}" for name, reason in report.fp32_nodes.items()]
    return {"io": "fp16" if fp16_io else "fp32", "fp32_nodes": report.fp32_nodes,
            "activation_ranges_checked": calibration is not None}


def _input_means(options: QuantizeOptions, calibration: Calibration) -> dict[str, np.ndarray] | None:
    """The tap means bias correction uses, or None when it is off."""
    return calibration.input_means if options.bias_correction else None


def _fallback(model: ir.Model, ranges: dict[str, TensorRange], options: QuantizeOptions, exclude: set[str],
              data: DataSource, means: dict[str, np.ndarray] | None, messages: list[str]) -> dict:
    """Rank the layers and run the fallback on (up to FALLBACK_SAMPLES of) the calibration data; report and record
    it. With sensitivity alone nothing is excluded."""
    from onebyone.optimize.precision.sensitivity import fall_back

    inputs = data.read(0, min(data.count, FALLBACK_SAMPLES))
    common = {"weight_range": options.weight_range, "input_means": means}
    if options.accuracy_budget is not None:
        budget = options.accuracy_budget
        result = fall_back(model, ranges, options.flavour, exclude, inputs, lambda _, drop: drop <= budget, **common)
    elif options.auto_exclude is not None:
        count = options.auto_exclude
        result = fall_back(model, ranges, options.flavour, exclude, inputs, lambda k, _: k >= count, **common)
    else:
        result = fall_back(model, ranges, options.flavour, exclude, inputs, lambda k, _: k >= 0, always_rank=True,
                           **common)
    for rank, (layer, error) in enumerate(result.ranking[:None if options.sensitivity else 5], start=1):
        messages.append(f"  sensitivity {rank}. {layer}: output rel-L2 {error:.3g} when quantized alone")
    messages.append(f"fallback: drop {result.drop_before:.2f} → {result.drop_after:.2f} pt ({result.metric}, "
                    f"{len(inputs)} samples); kept float: {', '.join(result.excluded) or 'nothing'}")
    return {"accuracy_budget_pt": options.accuracy_budget, "auto_exclude": options.auto_exclude,
            "excluded": result.excluded, "drop_before_pt": result.drop_before, "drop_after_pt": result.drop_after,
            "metric": result.metric, "samples": len(inputs), "ranking": result.ranking}


def _to_int8(model: ir.Model, calibration: Calibration, options: QuantizeOptions, exclude: set[str],
             keep: set[str], data: DataSource | None, messages: list[str]) -> dict:
    """Q/DQ from the calibration (nodes in `exclude` or `keep` stay float), then FP16 float parts when asked (nodes
    in `keep` stay FP32)."""
    from onebyone.optimize.precision.qdq import TensorRange, insert_qdq
    from onebyone.optimize.precision.trt_rules import trt_violations
    from onebyone.runtime.bundle.int8_overflow import overflow_prone

    amax = calibration.ranges(options.method, options.percentile)
    ranges = {name: TensorRange(amax[name], stats.minimum, stats.maximum)
              for name, stats in calibration.statistics.items()}
    means = _input_means(options, calibration)
    fallback = None
    if data is not None and options.wants_sensitivity:
        fallback = _fallback(model, ranges, options, exclude | keep, data, means, messages)
        exclude = exclude | set(fallback["excluded"])
    report = insert_qdq(model, ranges, options.flavour, exclude | keep, options.weight_range, means)
    for rank, layer in enumerate(fallback["excluded"] if fallback else [], start=1):
        report.float_nodes[layer] = f"kept float by the sensitivity fallback (rank {rank})"
    levels = WEIGHT_LEVELS[options.weight_range]
    messages.append(f"int8 ({options.flavour}, {options.method}, {options.weight_range} weights ±{levels}): "
                    f"{report.activations} activations and {report.weights} weights quantized, "
                    f"{len(report.float_nodes)} weighted nodes left float, {report.bias_corrected} biases corrected")
    messages += [f"  float {name}: {reason}" for name, reason in report.float_nodes.items()]
    messages += [f"warning: tensor {name!r} has no usable calibrated range, {note}"
                 for name, note in report.degenerate.items()]
    float_parts = _to_fp16(model, calibration, keep, options.fp16_io, messages) if options.float_dtype == "fp16" \
        else {}
    prone = overflow_prone(model)  # none with safe weights, by construction (optimize/precision/qdq.py)
    if prone and cpu.this_cpu().int8_saturates:  # advice for this CPU only; the manifest records the count anyway
        messages.append(f"  {len(prone)} weight tensors can overflow the int8 dot products of x86 CPUs without VNNI "
                        "(--weight-range full): the kernel check tells where it runs right; --weight-range safe "
                        "for such CPUs")
    if options.flavour == "trt":
        problems = trt_violations(model, report.float_nodes, float_parts.get("fp32_nodes"))
        if problems:
            raise CheckFailed("the Q/DQ graph breaks TensorRT's rules (a onebyone bug; nothing was written): "
                              + "; ".join(problems))
    return {"flavour": options.flavour, "method": options.method, "weight_range": options.weight_range,
            "weight_levels": levels, "overflow_prone_tensors": len(prone), "bias_corrected": report.bias_corrected,
            "percentile": options.percentile if options.method == "percentile" else None,
            "float_nodes": report.float_nodes, "float_dtype": options.float_dtype, "float_parts": float_parts,
            "degenerate_ranges": report.degenerate} | ({"fallback": fallback} if fallback else {})
