"""The pipeline's stages as Python functions: each takes a typed options object (its defaults are the CLI's), does
what the `onebyone <stage>` command does, and returns a result object instead of printing. The CLI is a shell over
these (runtime/commands/); docs/python-api.md shows the whole pipeline.

    from onebyone import stages
    optimized = stages.optimize("build/digits_resnet/model.onnx", target="trt")
    int8 = stages.quantize(optimized.output, stages.QuantizeOptions(precision="int8", calib="digits"))

The functions live here, not at the top of `onebyone`, because `onebyone.export` and `onebyone.optimize` are the
stages' packages. Heavy modules (torch, onnxruntime, onnx) load when a stage runs, not on import; so do the options
and result classes (`stages.QuantizeOptions` loads its module when first named).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from onebyone.export.options import ExportOptions
    from onebyone.export.stage import ExportResult
    from onebyone.optimize.adopt import AdoptResult
    from onebyone.optimize.precision.quantize import QuantizeOptions, QuantizeResult
    from onebyone.optimize.stage import OptimizeOptions, OptimizeResult
    from onebyone.runtime.bundle.plan import BuildOptions
    from onebyone.runtime.parity.check import Engine
    from onebyone.runtime.preflight.lint import Lint
    from onebyone.runtime.sessions.benchmark import BenchOptions, BenchResult
    from onebyone.runtime.sessions.build_stage import BuildResult
    from onebyone.runtime.sessions.bundle_check import VerifyResult
    from onebyone.runtime.sessions.comparison import ParityOptions, ParityResult

Options = TypeVar("Options")
CLASSES = (dict.fromkeys(("QuantizeOptions", "QuantizeResult"), "onebyone.optimize.precision.quantize")
           | dict.fromkeys(("OptimizeOptions", "OptimizeResult"), "onebyone.optimize.stage")
           | {"ExportOptions": "onebyone.export.options", "ExportResult": "onebyone.export.stage"}
           | dict.fromkeys(("ParityOptions", "ParityResult"), "onebyone.runtime.sessions.comparison")
           | dict.fromkeys(("BenchOptions", "BenchResult"), "onebyone.runtime.sessions.benchmark")
           | {"BuildOptions": "onebyone.runtime.bundle.plan", "BuildResult": "onebyone.runtime.sessions.build_stage"}
           | {"VerifyResult": "onebyone.runtime.sessions.bundle_check"})


def __getattr__(name: str) -> object:
    """The options and result classes, imported with their stage's module when first named."""
    if name in CLASSES:
        from importlib import import_module

        return getattr(import_module(CLASSES[name]), name)
    raise AttributeError(f"module 'onebyone.stages' has no attribute {name!r}")


def export(model: str, options: ExportOptions | None = None, **fields: object) -> ExportResult:
    """Export `model` (a zoo name or package.module:factory) to a bundle — model.onnx, golden samples, manifest —
    checked against torch before anything is written: `export("efficientnet_lite0", weights="pretrained")` or
    `export(name, ExportOptions(...))`. Raises UserError for an unknown model, missing weights or package, bad data;
    CheckFailed when the ONNX file does not compute what torch does (nothing written)."""
    from onebyone.export.options import ExportOptions
    from onebyone.export.stage import export_model

    return export_model(model, _options(ExportOptions, options, fields))


def optimize(source: str | Path, options: OptimizeOptions | None = None, **fields: object) -> OptimizeResult:
    """Run the target's verified graph passes on `source` (an ONNX file): `optimize(path, target="trt")` or
    `optimize(path, OptimizeOptions(...))`. Raises UserError for unknown targets/passes or a malformed file,
    CheckFailed when the result fails its golden check or `verify` catches a pass changing the outputs."""
    from onebyone.optimize.stage import OptimizeOptions
    from onebyone.optimize.stage import optimize as write

    return write(Path(source), _options(OptimizeOptions, options, fields))


def quantize(source: str | Path, options: QuantizeOptions | None = None, **fields: object) -> QuantizeResult:
    """Write `source` (an FP32 ONNX file) at another precision: `quantize(path, precision="int8", calib=DATA)` or
    `quantize(path, QuantizeOptions(...))`. An INT8 file written into a bundle is then kernel-checked on every
    installed CPU engine (recorded for `auto`; the result's `kernel_checks` and `auto_engine`). Raises UserError for
    options or inputs that cannot work, CheckFailed when the written file fails its golden check (nothing written)."""
    from onebyone.optimize.precision.quantize import QuantizeOptions
    from onebyone.optimize.precision.quantize import quantize as write
    from onebyone.runtime.sessions.engine_checks import stock_consumers

    options = _options(QuantizeOptions, options, fields)
    result = write(Path(source), options, _bf16_engine() if options.precision == "bf16" else None,
                   stock_consumers(options.precision))
    if result.precision == "int8" and result.in_bundle:
        from onebyone.runtime.sessions.bundle_check import engine_checks

        result.kernel_checks, result.auto_engine = engine_checks(result.output.parent, result.output.name)
    return result


def build(onnx: str | Path, options: BuildOptions | None = None, output: str | Path | None = None,
          **fields: object) -> BuildResult:
    """A TensorRT engine from `onnx` (NVIDIA GPU + TensorRT): `build(path, max_batch=32)`; in a bundle it must match the
    golden torch outputs before it is written and recorded. UserError for options or inputs that cannot work and for
    a machine without a GPU or TensorRT; CheckFailed when the engine does not match (nothing written)."""
    from onebyone.runtime.bundle.plan import BuildOptions
    from onebyone.runtime.sessions.build_stage import build as write

    return write(Path(onnx), None if output is None else Path(output), _options(BuildOptions, options, fields))


def verify(bundle: str | Path) -> VerifyResult:
    """Re-check every artifact of `bundle` against its golden torch outputs, and kernel-check each INT8 file on every
    installed CPU engine (recorded for `auto`). Artifacts that fail are in the result's `failed`."""
    from onebyone.runtime.sessions.bundle_check import verify as check_all

    return check_all(Path(bundle))


def parity(reference: str | Path, candidates: list[str | Path], options: ParityOptions | None = None,
           **fields: object) -> ParityResult:
    """Every candidate (.onnx, .plan, bundle) against the reference (a zoo name, a bundle — its torch model — or an
    FP32 .onnx) on the same data: `parity(bundle, [int8_file], data=FOLDER)`. A candidate out of bounds is in the
    result's `failed` (nothing raised); UserError for targets or data that cannot be compared."""
    from onebyone.runtime.sessions.comparison import ParityOptions
    from onebyone.runtime.sessions.comparison import parity as compare_all

    return compare_all(str(reference), [str(c) for c in candidates], _options(ParityOptions, options, fields))


def lint(onnx: str | Path, tensorrt: list[str] | None = None) -> Lint:
    """Will TensorRT take `onnx`? Every node against each named release's parser rules (default: the newest 10.x and
    11.x known), without TensorRT: `lint("model.onnx", ["10.16", "11.1"]).accepted`; each verdict lists the refusals
    (node, op, rule, source, fix) and the warnings. UserError for an unreadable file or an unknown release."""
    from onebyone.runtime.preflight.lint import lint_file

    return lint_file(Path(onnx), tensorrt)


def adopt(foreign: str | Path, output: str | Path, tensorrt: list[str] | None = None) -> AdoptResult:
    """Make another tool's Q/DQ file TensorRT-ready where the rewrite is exact (an INT32 bias DequantizeLinear folded
    to a float bias, a UINT8 zero point of 128 shifted to INT8, half scales typed like their data), checked against
    the foreign file on ONNX Runtime and linted for `tensorrt` (default: the newest 10.x and 11.x). CheckFailed,
    naming the rules, when it cannot be made exact (nothing written)."""
    from onebyone.optimize.adopt import adopt as rewrite

    return rewrite(Path(foreign), Path(output), tensorrt)


def bench(artifacts: list[str | Path], options: BenchOptions | None = None, **fields: object) -> BenchResult:
    """Latency and throughput of `artifacts` side by side, ratios against the first: `bench([fp32, int8],
    batches=[1, 8], seconds=5)`. Each is opened self-checked; UserError for artifacts that cannot be fed one input."""
    from onebyone.runtime.sessions.benchmark import BenchOptions
    from onebyone.runtime.sessions.benchmark import bench as time_all

    return time_all([str(a) for a in artifacts], _options(BenchOptions, options, fields))


def _options(kind: type[Options], options: Options | None, fields: dict[str, object]) -> Options:
    """`options`, or the options object built from keyword fields (one or the other)."""
    if options is not None and fields:
        raise TypeError("give an options object or keyword fields, not both")
    return options if options is not None else kind(**fields)


def _bf16_engine() -> Engine:
    """OpenVINO with its BF16 hint, as the golden check of a bf16 file; refused where this CPU has no BF16."""
    from onebyone.runtime.core.cpu import this_cpu
    from onebyone.runtime.core.errors import UserError
    from onebyone.runtime.parity.check import Engine
    from onebyone.runtime.sessions.engines import OpenOptions
    from onebyone.runtime.sessions.openvino_backend import OpenVinoSession, bf16_refusal, import_openvino
    from onebyone.runtime.sessions.target import Target

    import_openvino()
    if (refusal := bf16_refusal(this_cpu())) is not None:
        raise UserError(refusal)

    def open_openvino(path: Path) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        return OpenVinoSession(Target.file("onnx", path), OpenOptions()).run_batched

    return Engine("OpenVINO bf16", open_openvino)
