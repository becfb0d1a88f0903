"""Which CPU engines compute an INT8 file's own Q/DQ math on this CPU: the kernel check run on each installed engine,
recorded in the bundle manifest per CPU class (`ArtifactRecord.kernel_checks`), and read by `auto`
(runtime/sessions/choice.py), which never picks an engine whose check failed here — or that was never checked here.

An engine can depart from a file's math for reasons no placement rule foresees (docs/openvino.md: OpenVINO's int8
Concat with the `trt` flavour), so the record, not a table, decides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.labelled import LabelledSet
from onebyone.runtime.bundle.manifest import read_manifest, write_manifest
from onebyone.runtime.bundle.tensors import DYNAMIC
from onebyone.runtime.core.cpu import this_cpu
from onebyone.runtime.core.files import sha256_file
from onebyone.runtime.parity.check import MAX_BATCH, Engine
from onebyone.runtime.parity.kernel_check import KernelCheck, check_kernels, fresh_inputs
from onebyone.runtime.sessions import engines

FRESH_SAMPLES = 16  # new random samples per kernel check, beside the golden and labelled inputs


def installed_engines() -> list[str]:
    """The CPU engines (of the registry) this machine can run INT8 ONNX files on."""
    return [e.name for e in engines.opening("onnx") if "cpu" in e.devices and "int8-ort" in e.kinds and e.available()]


def stock_consumers(precision: str | None) -> tuple[Engine, ...]:
    """The stock configurations beyond ONNX Runtime's a file of `precision` is golden-checked in on this machine:
    OpenVINO with default properties, when it is installed (runtime/sessions/openvino_backend.py `stock_openvino`).
    Binding for FP32/FP16 files; for an INT8 file its verdict is shown and recorded, and the kernel check decides
    whether OpenVINO may run it (`auto`, triton-repo): OpenVINO departs from some `trt` files by design
    (docs/openvino.md), which TensorRT and ONNX Runtime compute as written."""
    if "openvino" not in installed_engines():
        return ()
    from onebyone.runtime.sessions.openvino_backend import stock_openvino

    return (stock_openvino(this_cpu(), binding=precision != "int8"),)


def kernel_check(path: Path, engine: str, golden: Golden, labelled: LabelledSet | None) -> KernelCheck:
    """The INT8 file on `engine` (every optimization on) against its exact Q/DQ math, on the golden inputs, the
    labelled data and FRESH_SAMPLES new random samples seeded by the file's content, so two checks of one file on
    one machine see the same samples (whole batches of a fixed-batch model)."""
    from onebyone.runtime.sessions.opening import open as open_session

    fresh = fresh_inputs(golden.inputs, FRESH_SAMPLES, np.random.default_rng(int(sha256_file(path)[:16], 16)))
    inputs = {name: np.concatenate([values, *([labelled.inputs] if labelled is not None else []), fresh[name]])
              for name, values in golden.inputs.items()}
    with open_session(path, engine, self_check=False) as session:
        fixed = session.inputs[0].shape[0]
        if fixed != DYNAMIC:
            inputs = {name: values[:len(values) - len(values) % fixed] for name, values in inputs.items()}
        outputs = session.run_batched(inputs, batch=MAX_BATCH if fixed == DYNAMIC else fixed)
    return check_kernels(path, inputs, outputs)


def check_and_record(bundle: Path, name: str) -> dict[str, KernelCheck]:
    """Run the kernel check of bundle artifact `name` (an INT8 ONNX file) on every installed CPU engine and record the
    outcomes under this CPU's class in the manifest, replacing what an earlier check recorded for that class, with
    the engine `auto` now chooses from them (`ArtifactRecord.auto_engine`)."""
    from onebyone.runtime.sessions.opening import auto_backend

    manifest = read_manifest(bundle)
    golden = Golden.load(bundle / manifest.golden_of(name))
    labelled = LabelledSet.of_bundle(bundle, manifest)
    results = {engine: kernel_check(bundle / name, engine, golden, labelled) for engine in installed_engines()}
    manifest = read_manifest(bundle)  # as it is now: the checks took a while
    record = manifest.artifacts[name]
    cpu_class = this_cpu().cpu_class
    record.kernel_checks = (record.kernel_checks or {}) | {
        cpu_class: {engine: check.as_record() for engine, check in results.items()}}
    write_manifest(bundle, manifest)
    chosen = auto_backend(bundle / name)  # reads the checks just recorded
    record.auto_engine = (record.auto_engine or {}) | {cpu_class: chosen}
    write_manifest(bundle, manifest)
    return results
