"""The export stage: a model (zoo name or factory, optional weights) → a bundle with model.onnx, golden.npz and
manifest.json, verified against torch before anything is published."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from onebyone.export.onnx_export import check_export_options, export_onnx
from onebyone.export.options import ExportOptions
from onebyone.export.shapes import golden_sizes
from onebyone.export.weights import load_weights, pretrained_weights
from onebyone.export.zoo import ModelSpec, instantiate, resolve
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.labelled import LABELLED_NAME, LabelledSet
from onebyone.runtime.bundle.labels import check_labels, read_labels
from onebyone.runtime.bundle.manifest import (
    GOLDEN_NAME,
    MANIFEST_NAME,
    RANDOM_GOLDEN,
    ArtifactRecord,
    Manifest,
    ModelInfo,
    manifest_path,
    read_manifest,
    write_manifest,
)
from onebyone.runtime.bundle.onnx_file import external_data_files, io_specs, load_model
from onebyone.runtime.bundle.preprocess import resized
from onebyone.runtime.bundle.sources import open_source
from onebyone.runtime.bundle.tensors import spec_records
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.errors import CheckFailed, UserError, option
from onebyone.runtime.core.files import publish, sha256_file, staging_dir
from onebyone.runtime.core.progress import progress
from onebyone.runtime.core.version import __version__
from onebyone.runtime.parity.check import ArtifactCheck, check_artifact

GOLDEN_SEED = 0
GOLDEN_DYNAMIC_BATCH = 2  # golden batch for dynamic-batch exports: more than one, to exercise the batch axis


@dataclasses.dataclass(frozen=True)
class ExportResult:
    bundle: Path
    onnx_path: Path
    check: ArtifactCheck
    torch_accuracy: float | None  # the torch model's top-1 on the same labelled data, when the model has some
    removed_stale: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)  # what the user should know about the bundle


def split_destination(output: Path) -> tuple[Path, str]:
    """`-o DIR` → (DIR, "model.onnx"); `-o DIR/name.onnx` → (DIR, "name.onnx")."""
    if output.suffix == ".onnx":
        return output.parent, output.name
    return output, "model.onnx"


def golden_inputs(spec: ModelSpec, batch: int) -> np.ndarray:
    """The first labelled samples when the model has data (digits), else standard-normal inputs from a fixed seed."""
    if spec.labelled_data is not None:
        return np.ascontiguousarray(spec.labelled_data().inputs[:batch], dtype=np.float32)
    return np.random.default_rng(GOLDEN_SEED).standard_normal((batch, *spec.input_shape), dtype=np.float32)


def make_golden(model: torch.nn.Module, spec: ModelSpec, options: ExportOptions) -> Golden:
    first = golden_inputs(spec, options.batch or GOLDEN_DYNAMIC_BATCH)
    cases = []
    for size in golden_sizes(spec, options):
        inputs = first if size == first.shape[2:] else resized(first, size)
        with torch.no_grad():
            outputs = model(torch.from_numpy(inputs))
        outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
        if len(outputs) != len(spec.output_names) or not all(isinstance(out, torch.Tensor) for out in outputs):
            raise UserError(f"{spec.source} returns {len(outputs)} outputs; {spec.name} names "
                            f"{len(spec.output_names)} ({', '.join(spec.output_names)}): a model returns a tensor or "
                            "a tuple of tensors")
        cases.append(Golden(inputs={options.input_name: inputs},
                            outputs={name: out.numpy() for name, out in zip(spec.output_names, outputs, strict=True)}))
    if spec.labels is not None:
        check_labels(spec.labels, spec.task, cases[0].outputs[spec.output_names[0]].shape, spec.source)
    return dataclasses.replace(cases[0], more=tuple(cases[1:]))


def export_bundle(spec: ModelSpec, output: Path, options: ExportOptions, weights: Path | None = None) -> ExportResult:
    """Export, verify against torch on the golden inputs, then publish model, golden samples and manifest.

    Files are built in a staging directory and renamed into place only after the check passes, manifest last.
    """
    bundle, onnx_name = split_destination(output)
    check_export_options(options)  # the options' mistakes before any work (digits_resnet trains for minutes)
    golden_sizes(spec, options)
    with staging_dir(bundle) as stage:
        model = instantiate(spec)  # before the bar: building may show its own progress (digits_resnet trains)
        if weights is not None:
            load_weights(model, weights)
        staged_onnx = stage / onnx_name
        staged = [staged_onnx, stage / GOLDEN_NAME]
        with progress() as bar:
            task = bar.add_task(f"exporting {spec.name}", total=3)
            export_onnx(model, spec, staged_onnx, options)
            bar.advance(task)
            golden = make_golden(model, spec, options)
            golden.save(stage / GOLDEN_NAME)
            labelled, torch_accuracy = None, None
            if spec.labelled_data is not None:
                labelled = spec.labelled_data()
                labelled.save(stage / LABELLED_NAME)
                staged.append(stage / LABELLED_NAME)
                with torch.no_grad():
                    torch_accuracy = labelled.accuracy(model(torch.from_numpy(labelled.inputs)).numpy())
            bar.advance(task)
            check = check_artifact(staged_onnx, golden, TOLERANCES["fp32"], labelled)
            bar.advance(task)
        if not check.ok:
            raise CheckFailed(f"the exported ONNX does not match torch on the golden inputs: {check.describe()}; "
                              "nothing was written")
        manifest = _manifest(spec, options, weights, stage, onnx_name, check, golden)
        removed = _remove_stale(bundle, manifest)
        for path in [*staged, *external_data_files(staged_onnx)]:
            publish(path, bundle / path.name)
        write_manifest(bundle, manifest)
    return ExportResult(bundle=bundle, onnx_path=bundle / onnx_name, check=check, torch_accuracy=torch_accuracy,
                        removed_stale=removed, notes=_notes(spec))


def _notes(spec: ModelSpec) -> list[str]:
    """A classifier of images exported without data gets random golden inputs it will never see: say what that
    means for later checks and how to give real ones."""
    if spec.labelled_data is not None or spec.preprocess is None or spec.task != "classification":
        return []
    return ["note: no --data: the golden samples are random N(0,1) inputs, which an image classifier never sees. "
            "quantize judges its files on samples of the calibration data it held out of the calibration; for checks "
            "and top-1 on real images in every stage, export with --data DIR[:SPLIT] (labelled images)"]


def export_model(model: str, options: ExportOptions) -> ExportResult:
    """`model` (a zoo name or package.module:factory) with `options.weights`, labels and carried data → a bundle at
    `options.output` (default build/MODEL): what `onebyone export` and `onebyone.stages.export` do."""
    spec = resolve(model, options.input_shape)
    if options.labels is not None:
        spec = dataclasses.replace(spec, labels=read_labels(Path(options.labels)))
    weights = options.weights
    if weights is not None and str(weights) == "pretrained":
        weights = pretrained_weights(spec)
    elif weights is not None and not Path(weights).is_file():
        raise UserError(f"weights file {weights} does not exist")
    if options.data is not None:
        spec = dataclasses.replace(spec, labelled_data=_carried(options.data, options.data_samples, spec,
                                                                 options.input_name))
    return export_bundle(spec, Path(options.output or Path("build") / spec.name), options,
                         None if weights is None else Path(weights))


def _carried(source: str, samples: int, spec: ModelSpec, input_name: str) -> Callable[[], LabelledSet]:
    """The labelled set `data` names, read once with the model's preprocessing, as a ModelSpec's labelled data."""
    data = open_source(source, spec.input_shape, spec.preprocess, samples, input_name)
    if data.labels is None:
        raise UserError(f"{option('data', source)} has no labels; carry labelled data (a labels.tsv folder, class "
                        "folders, a .npz with `labels`)")
    labelled = LabelledSet(data.all(), data.labels, data.description)
    return lambda: labelled


def _manifest(spec: ModelSpec, options: ExportOptions, weights: Path | None, stage: Path, onnx_name: str,
              check: ArtifactCheck, golden: Golden) -> Manifest:
    staged_onnx = stage / onnx_name
    inputs, outputs = io_specs(load_model(staged_onnx))
    made_by = {
        "stage": "export",
        "exporter": options.exporter,
        "opset": options.opset,
        "dynamic_batch": options.batch is None,
        "dynamic": list(options.dynamic),
        "keep_batchnorm": options.keep_batchnorm,
        "tools": {"onebyone": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                  "onnxruntime": onnxruntime.__version__},
    }
    artifacts = {
        onnx_name: ArtifactRecord.for_file(staged_onnx, kind="onnx", made_by=made_by, precision="fp32",
                                           tolerance=check.parity.tolerance, parity=check.as_record()),
        GOLDEN_NAME: ArtifactRecord.for_file(
            stage / GOLDEN_NAME, kind="golden",
            made_by={"stage": "export", "outputs_from": "torch",
                     "source": "labelled data" if spec.labelled_data else f"{RANDOM_GOLDEN} seed {GOLDEN_SEED}"}),
    }
    if (stage / LABELLED_NAME).is_file():
        artifacts[LABELLED_NAME] = ArtifactRecord.for_file(stage / LABELLED_NAME, kind="labelled-data",
                                                           made_by={"stage": "export", "source": spec.source})
    for data_file in external_data_files(staged_onnx):
        artifacts[data_file.name] = ArtifactRecord.for_file(data_file, kind="onnx-external-data",
                                                            made_by={"stage": "export", "belongs_to": onnx_name})
    model_info = ModelInfo(
        name=spec.name, source=spec.source,
        weights={"path": str(weights), "sha256": sha256_file(weights)} if weights else None,
        input_name=options.input_name, output_names=list(spec.output_names), input_shape=list(spec.input_shape),
        batch=options.batch, preprocess=dataclasses.asdict(spec.preprocess) if spec.preprocess else None,
        task=spec.task, labels=list(spec.labels) if spec.labels is not None else None,
        inputs=spec_records(inputs), outputs=spec_records(outputs),
        checked_shapes=golden.input_shapes())
    return Manifest(model=model_info, artifacts=artifacts)


def _remove_stale(bundle: Path, manifest: Manifest) -> list[str]:
    """A re-export invalidates everything derived from the old model: delete the files the old manifest listed
    that the new one does not (an old model.int8.onnx beside a new model.onnx would be a trap)."""
    if not manifest_path(bundle).is_file():
        return []
    try:
        previous = read_manifest(bundle)
    except UserError:
        return []
    stale = sorted(set(previous.artifacts) - set(manifest.artifacts) - {MANIFEST_NAME})
    for name in stale:
        (bundle / name).unlink(missing_ok=True)
    return stale
