"""torch module → ONNX file: export, metadata, shape inference, checker.

Default exporter is TorchScript (`dynamo=False`): on these nets it gives the cleaner graph
(GlobalAveragePool → Flatten → Gemm rather than ReduceMean → Shape/Concat/Reshape), names every tensor after its
module path (`/layer1/layer1.0/conv1/Conv_output_0`, which per-layer parity reports map back to layers), keeps
BatchNormalization cleanly when asked, and exports ResNet-50 in seconds. `--exporter dynamo` uses torch.export.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx_ir as ir
import torch
from onnx_ir.passes.common import (
    DeduplicateInitializersPass,
    IdentityEliminationPass,
    LiftConstantsToInitializersPass,
    ShapeInferencePass,
)
from torch import nn

from onebyone.export.options import AXES, EXPORTERS, ExportOptions
from onebyone.export.shapes import golden_sizes
from onebyone.export.zoo import ModelSpec
from onebyone.runtime.bundle.onnx_file import CHECK_SIZES_KEY, fold_constants, save_model
from onebyone.runtime.core.errors import UserError, option
from onebyone.runtime.core.version import __version__


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporters' deprecation chatter and stdout prints; real failures still raise."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            yield
        finally:
            logger.setLevel(level)


def dynamic_axes(model: nn.Module, example: torch.Tensor, spec: ModelSpec,
                 options: ExportOptions) -> dict[str, dict[int, str]] | None:
    """The exporter's dynamic axes: the input's batch (unless fixed) and the `dynamic` axes; each output's batch and,
    when height/width are dynamic, its own H and W named after it (`p3_height`): the exporter's own names would
    claim that maps of different sizes share one dimension."""
    axes = ({"batch"} if options.batch is None else set()) | set(options.dynamic)
    if not axes:
        return None
    with torch.no_grad():
        outputs = model(example)
    outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
    spatial = bool(axes & {"height", "width"})
    named = {options.input_name: {index: name for name, index in AXES.items() if name in axes}}
    for name, output in zip(spec.output_names, outputs, strict=False):
        named[name] = ({0: "batch"} if "batch" in axes else {}) | (
            {2: f"{name}_height", 3: f"{name}_width"} if spatial and output.dim() == 4 else {})
    return named


def _torch_export(model: nn.Module, example: torch.Tensor, path: Path, spec: ModelSpec,
                  options: ExportOptions) -> None:
    names = {"input_names": [options.input_name], "output_names": list(spec.output_names),
             "opset_version": options.opset}
    axes = dynamic_axes(model, example, spec, options)
    if options.exporter == "torchscript":
        training = torch.onnx.TrainingMode.PRESERVE if options.keep_batchnorm else torch.onnx.TrainingMode.EVAL
        torch.onnx.export(model, (example,), str(path), dynamo=False, dynamic_axes=axes, training=training,
                          do_constant_folding=not options.keep_batchnorm, **names)
        return
    import onnxscript.optimizer

    program = torch.onnx.export(model, (example,), dynamo=True, dynamic_axes=axes, verbose=False,
                                optimize=not options.keep_batchnorm, **names)
    if options.keep_batchnorm:  # the full optimizer folds BatchNormalization into Conv; fold constants only
        onnxscript.optimizer.fold_constants(program.model)
        onnxscript.optimizer.remove_unused_nodes(program.model)
    program.save(str(path))


def check_export_options(options: ExportOptions) -> None:
    """The exporter and dynamic-axis options' mistakes, named before any model is built or trained."""
    if options.exporter not in EXPORTERS:
        raise UserError(f"{option('exporter', repr(options.exporter))} is not one of {', '.join(EXPORTERS)}")
    asked = option("dynamic", ",".join(options.dynamic))
    if unknown := [axis for axis in options.dynamic if axis not in AXES]:
        raise UserError(f"{asked}: {', '.join(unknown)} is not an input axis; dynamic axes are {', '.join(AXES)}")
    if options.batch is not None and "batch" in options.dynamic:
        raise UserError(f"{asked} conflicts with {option('batch', options.batch)}: leave the batch out of one")


def export_onnx(model: nn.Module, spec: ModelSpec, path: Path, options: ExportOptions) -> None:
    """Export `model` to `path` (plus `path.data` when over 2 GB), annotated, shape-inferred and checker-clean."""
    check_export_options(options)
    example = torch.randn(options.batch or 1, *spec.input_shape)
    try:
        with _quiet_exporter(), torch.no_grad():
            _torch_export(model, example, path, spec, options)
    except UserError:
        raise
    except Exception as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"torch.onnx could not export {spec.source} with input shape "
                        f"{[options.batch or 1, *spec.input_shape]}: {message}") from None
    _annotate(path, spec, options)


def _annotate(path: Path, spec: ModelSpec, options: ExportOptions) -> None:
    """Add onebyone metadata and inferred shapes with onnx-ir, re-save (external data if large), run the checker.

    Exporter clutter is cleaned so every later stage sees only computation: Constant nodes (e.g. ReLU6's Clip
    bounds) become deduplicated initializers, and Identity nodes go (the TorchScript exporter hides equal folded
    tensors, such as the zero biases of freshly initialised BatchNorms, behind them).
    """
    model = ir.load(path)
    metadata = {
        "onebyone.version": __version__,
        "onebyone.model": spec.name,
        "onebyone.source": spec.source,
        "onebyone.input_shape": json.dumps(list(spec.input_shape)),
        "onebyone.task": spec.task,
    }
    if spec.labels is not None:
        metadata["onebyone.labels"] = json.dumps(list(spec.labels))
    if {"height", "width"} & set(options.dynamic):
        metadata[CHECK_SIZES_KEY] = json.dumps([list(size) for size in golden_sizes(spec, options)])
    if spec.preprocess is not None:
        metadata["onebyone.preprocess"] = spec.preprocess.to_json()
    model.metadata_props.update(metadata)
    fold_constants(model)  # constant subgraphs the exporter writes for Pad's pads
    ir.passes.Sequential(
        LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        IdentityEliminationPass(),
        DeduplicateInitializersPass(),
        ShapeInferencePass(),
    )(model)
    save_model(model, path, "export")

