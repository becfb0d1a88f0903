"""Triton model repositories: per model `config.pbtxt` and `1/model.onnx` (backend onnxruntime, or openvino with
`default_model_filename: "model.onnx"`) or `1/model.plan` (backend tensorrt) — the scale-out path for the same
artifacts the thin server runs.

Triton's OpenVINO backend takes its settings as string `parameters` (its README): PERFORMANCE_HINT (LATENCY or
THROUGHPUT), INFERENCE_NUM_THREADS, NUM_STREAMS and HINT_BF16 (YES, written for a bf16 artifact). It has no
parameter for an f32 precision hint, so on an AMX CPU it runs an FP32 file in OpenVINO's default, BF16; the config
says so in a comment, and `onebyone serve --backend openvino` is the way to serve it held to FP32.

Tensor specs come from the file itself (the ONNX graph, or the I/O that `onebyone build` recorded in plan.json), so
no GPU is needed to write a repository for a plan. A model directory is assembled beside its destination and renamed
into place, replacing an older one only once the new one is complete.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

from onebyone.runtime.bundle.labels import LABEL_FILENAME, label_file_text
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, MANIFEST_NAME
from onebyone.runtime.bundle.plan import read_plan_info
from onebyone.runtime.bundle.tensors import TensorSpec, batchable, spec_from_record
from onebyone.runtime.core.errors import UserError, option
from onebyone.runtime.core.files import ensure_writable_dir
from onebyone.runtime.serve.protocol import datatype_of
from onebyone.runtime.serve.triton_python import ARTIFACT_PARAMETER, ENGINE_PARAMETER, MODEL_FILENAME, MODEL_PY
from onebyone.runtime.sessions import engines
from onebyone.runtime.sessions.engines import Engine
from onebyone.runtime.sessions.locate import locate
from onebyone.runtime.sessions.target import ModelDescription, Target, describe_from_manifest, describe_from_metadata

ACCELERATOR_PRECISIONS = ("fp32", "fp16")
PYTHON = "python"  # `triton-repo --backend python`: Triton's Python backend runs the artifact with onebyone


@dataclasses.dataclass(frozen=True)
class RepoOptions:
    max_batch: int = 32
    max_delay_us: int | None = 2000  # None: no dynamic_batching block
    instances: int = 1
    instance_kind: str = "gpu"  # instance_group kind: gpu or cpu
    trt_accelerator: str | None = None  # onnxruntime on GPU: TensorRT EP with this precision_mode
    engine: str = "auto"  # the engine (registry name) whose Triton backend runs it; auto: the default for its format;
    # PYTHON: Triton's Python backend running onebyone (runtime/serve/triton_python.py)
    python_engine: str = "auto"  # with PYTHON: the onebyone engine that runs the artifact inside Triton
    performance_hint: str = "LATENCY"  # openvino: LATENCY or THROUGHPUT
    threads: int | None = None  # openvino: INFERENCE_NUM_THREADS (None: the backend's default, every core)


def _described(target: Target) -> tuple[list[TensorSpec], list[TensorSpec], ModelDescription]:
    """The file's inputs and outputs, and what is known of the model (its class labels): from the bundle's manifest,
    else from the metadata `export` wrote into the ONNX file (which `build` copies into plan.json)."""
    from onebyone.runtime.bundle.onnx_file import io_specs, load_model

    if target.kind == "plan":
        info = read_plan_info(target.path)
        inputs = [spec_from_record(r) for r in info.io["inputs"]]
        outputs = [spec_from_record(r) for r in info.io["outputs"]]
        metadata = info.metadata
    else:
        model = load_model(target.path)
        (inputs, outputs), metadata = io_specs(model), dict(model.metadata_props)
    description = (describe_from_manifest(target.manifest, target.record) if target.manifest is not None
                   else describe_from_metadata(target.path.stem, metadata, None))
    return inputs, outputs, description


def _tensors(kind: str, specs: list[TensorSpec], skip: int, label_file: bool = False) -> str:
    label = f'    label_filename: "{LABEL_FILENAME}"\n' if label_file else ""
    entries = [f'  {{\n    name: "{s.name}"\n    data_type: TYPE_{datatype_of(s.dtype)}\n'
               f"    dims: [ {', '.join(str(d) for d in s.shape[skip:])} ]\n{label}  }}" for s in specs]
    return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"


def config_text(name: str, target: Target, options: RepoOptions) -> tuple[str, tuple[str, ...] | None]:
    """config.pbtxt (protobuf text format of Triton's ModelConfig) for one model, and the class labels its outputs'
    label_filename names (None: the model has none)."""
    inputs, outputs, description = _described(target)
    batching = batchable(inputs)
    backend = triton_backend(target, options)
    if backend == "tensorrt" and options.instance_kind != "gpu":
        raise UserError(f"{target.path} is a TensorRT plan: it runs on KIND_GPU instances only")
    if backend == "openvino" and options.instance_kind != "cpu":
        raise UserError(f"{target.path}: Triton's openvino backend runs on KIND_CPU instances only; "
                        f"use {option('instance_kind', 'cpu')}")
    if description.precision == "bf16" and backend not in ("openvino", PYTHON):
        raise UserError(f"{target.path} is a bf16 artifact (OpenVINO's BF16 inference hint); write it with "
                        f"{option('engine', 'openvino')}")
    if (wrong := computed_wrongly(target, backend)) is not None:
        raise UserError(wrong)
    if options.trt_accelerator is not None and (backend != "onnxruntime" or options.instance_kind != "gpu"):
        raise UserError(f"{option('trt_accelerator')} applies to ONNX models on GPU instances")
    skip = 1 if batching else 0
    text = (f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: {options.max_batch if batching else 0}\n'
            + _tensors("input", inputs, skip) + _tensors("output", outputs, skip, description.labels is not None))
    if batching and options.max_delay_us is not None:
        text += f"dynamic_batching {{\n  max_queue_delay_microseconds: {options.max_delay_us}\n}}\n"
    text += (f"instance_group [\n  {{\n    count: {options.instances}\n"
             f"    kind: KIND_{options.instance_kind.upper()}\n  }}\n]\n")
    if backend == "openvino":
        text += _openvino_parameters(description.precision, options)
    if backend == PYTHON:
        text += _parameters({ARTIFACT_PARAMETER: target.path.name, ENGINE_PARAMETER: options.python_engine})
    if options.trt_accelerator is not None:
        text += ("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n      {\n"
                 '        name: "tensorrt"\n'
                 f'        parameters {{ key: "precision_mode" value: "{options.trt_accelerator.upper()}" }}\n'
                 "      }\n    ]\n  }\n}\n")
    return text, description.labels


def computed_wrongly(target: Target, backend: str) -> str | None:
    """Why Triton's `backend` would compute a bundle's INT8 file wrongly on this CPU class — its kernel check there
    (runtime/sessions/engine_checks.py; onnxruntime's is a plain session's arithmetic) failed — naming the backends
    whose check passed; None when it passed or was never run here (nothing is known against it)."""
    from onebyone.runtime.core.cpu import this_cpu

    record = target.record
    if record is None or record.precision != "int8" or backend not in ("onnxruntime", "openvino"):
        return None
    checks = (record.kernel_checks or {}).get(this_cpu().cpu_class, {})
    if backend not in checks or checks[backend]["ok"]:
        return None
    right = [name for name, check in checks.items() if check["ok"]]
    instead = (f"write it with {' or '.join(option('engine', name) for name in right)}, whose check passed"
               if right else "no engine computed it right here: re-quantize it (docs/cpus.md)")
    return (f"{target.path}: Triton's {backend} backend would compute something else than the file states on this "
            f"CPU class ({this_cpu().cpu_class}): its kernel check failed ({'; '.join(checks[backend]['failures'])}); "
            f"{instead}")


def triton_backend(target: Target, options: RepoOptions) -> str:
    """The Triton backend of the model written for `target`."""
    return PYTHON if options.engine == PYTHON else triton_engine(target, options.engine).triton_backend or ""


def triton_engine(target: Target, name: str) -> Engine:
    """The engine `name` (auto: the first registered for the target's format), refused without a Triton backend."""
    chosen = engines.opening(target.kind)[0] if name == "auto" else engines.engine(name)
    if chosen.triton_backend is None:
        writable = ", ".join(e.name for e in engines.engines() if e.triton_backend is not None)
        raise UserError(f"{target.label}: the {chosen.name} engine has no Triton backend; choose one of {writable}")
    return chosen


def _openvino_parameters(precision: str | None, options: RepoOptions) -> str:
    """default_model_filename and the parameters of Triton's openvino backend (module docstring)."""
    values = {"PERFORMANCE_HINT": options.performance_hint, "NUM_STREAMS": "1"}
    if options.performance_hint == "THROUGHPUT":
        values["NUM_STREAMS"] = str(options.instances)
    if options.threads is not None:
        values["INFERENCE_NUM_THREADS"] = str(options.threads)
    if precision == "bf16":
        values["HINT_BF16"] = "YES"
    note = ("" if precision == "bf16" else
            "# OpenVINO computes this file in BF16 on AMX CPUs (its default; the backend has no f32 hint)\n")
    return f'default_model_filename: "model.onnx"\n{note}' + _parameters(values)


def _parameters(values: dict[str, str]) -> str:
    """A config's string `parameters`."""
    entries = ",\n".join(f'  {{\n    key: "{key}"\n    value: {{ string_value: "{value}" }}\n  }}'
                         for key, value in values.items())
    return f"parameters [\n{entries}\n]\n"


def write_model(repository: Path, name: str, target: Target, options: RepoOptions) -> Path:
    """Write `repository/name/` (config.pbtxt, labels.txt where the model has class labels, 1/model.onnx or
    1/model.plan, external weights beside the ONNX; for the Python backend 1/model.py beside the artifact under its
    own name, with its bundle's manifest and golden samples)."""
    from onebyone.runtime.bundle.onnx_file import external_data_files

    config, labels = config_text(name, target, options)
    ensure_writable_dir(repository)
    staged = Path(tempfile.mkdtemp(dir=repository, prefix=f".{name}-"))
    try:
        version = staged / "1"
        version.mkdir()
        python = options.engine == PYTHON
        shutil.copyfile(target.path, version / (target.path.name if python else
                                                f"model{triton_engine(target, options.engine).suffixes[0]}"))
        for data in external_data_files(target.path) if target.kind == "onnx" else []:
            shutil.copyfile(data, version / data.name)  # the ONNX refers to it by this name
        if python:  # the model, and what its self-check and `auto` read when the artifact belongs to a bundle
            (version / MODEL_FILENAME).write_text(MODEL_PY)
            for name_in_bundle in (MANIFEST_NAME, GOLDEN_NAME) if target.bundle is not None else ():
                shutil.copyfile(target.bundle / name_in_bundle, version / name_in_bundle)
        (staged / "config.pbtxt").write_text(config)
        if labels is not None:
            (staged / LABEL_FILENAME).write_text(label_file_text(labels))
        os.chmod(staged, 0o755)
        destination = repository / name
        if destination.exists():
            retired = Path(tempfile.mkdtemp(dir=repository, prefix=f".{name}-old-"))
            os.replace(destination, retired / name)
            os.replace(staged, destination)
            shutil.rmtree(retired)
        else:
            os.replace(staged, destination)
        return destination
    finally:
        shutil.rmtree(staged, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class WrittenModel:
    path: Path  # the model's directory in the repository
    source: Path  # the artifact copied into it
    backend: str  # its Triton backend


def write_repository(targets: list[str], repository: Path, options: RepoOptions) -> list[WrittenModel]:
    """One model per target (a bundle directory, an .onnx or .plan file) in `repository`, named as the server names
    it (runtime/serve/models.py)."""
    from onebyone.runtime.serve.models import model_name

    if options.engine != "openvino" and (options.threads is not None or options.performance_hint != "LATENCY"):
        raise UserError(f"{option('threads')} and {option('performance_hint')} apply to "
                        f"{option('engine', 'openvino')}")
    if options.engine != PYTHON and options.python_engine != "auto":
        raise UserError(f"{option('python_engine')} applies to {option('engine', PYTHON)}")
    located = [locate(target, "auto" if options.engine == PYTHON else options.engine) for target in targets]
    names = [model_name(target) for target in located]
    if len(set(names)) != len(names):
        raise UserError(f"two targets give the same model name ({', '.join(names)}); list each once")
    return [WrittenModel(write_model(repository, name, target, options), target.path, triton_backend(target, options))
            for name, target in zip(names, located, strict=True)]
