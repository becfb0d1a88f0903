"""TensorRT plans without TensorRT: build options and optimization-profile shapes, the `MODEL.plan.json` record,
the compatibility check on load, dtype mapping and buffer sizing. Everything here is plain Python, testable on CPU.

A plan runs only on the TensorRT version and GPU compute capability it was built with; `MODEL.plan.json` records
both (plus the GPU name, the ONNX file's sha256, the profiles, the I/O tensors, the build time and the plan's own
sha256), and a load that finds anything else is refused with the rebuild command.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.bundle.tensors import DYNAMIC, TensorSpec
from onebyone.runtime.core.errors import UserError, option
from onebyone.runtime.core.files import sha256_file

PLAN_FORMAT = "onebyone.plan/2"  # /2: `profiles` is a list (several optimization profiles)
PLAN_FORMATS = ("onebyone.plan/1", PLAN_FORMAT)  # /1 held one profile, read as a list of one
DEFAULT_MIN_BATCH, DEFAULT_OPT_BATCH, DEFAULT_MAX_BATCH = 1, 8, 32
DEFAULT_OPT_LEVEL = 3  # TensorRT's own default builder optimization level

# TensorRT DataType member names → numpy; BF16/FP8/INT4/FP4 have no numpy dtype and are refused at the I/O boundary.
TRT_TO_NUMPY = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "UINT8": np.uint8, "INT32": np.int32,
                "INT64": np.int64, "BOOL": np.bool_}


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """`onebyone build` options. `opt_batch` None: min(8, max_batch), at least min_batch."""

    min_batch: int = DEFAULT_MIN_BATCH
    opt_batch: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    workspace_mib: int | None = None  # None: TensorRT's default (the device's memory)
    timing_cache: Path | None = None
    opt_level: int = DEFAULT_OPT_LEVEL
    # optimization profiles: "NAME:MIN..OPT..MAX[,...]" each (`parse_shapes`), or input → (min, opt, max) shapes;
    # empty: one profile from the batch options
    shapes: tuple[str | dict[str, tuple[tuple[int, ...], ...]], ...] = ()
    # where the plan may run beyond the GPU and TensorRT it is built with (`where_it_runs`): "ampere+" (any GPU of
    # compute capability 8.0 or later) or "same-compute-capability" (any GPU of the builder's compute capability)
    hardware_compatibility: str = "none"
    version_compatible: bool = False  # later TensorRT releases of the same major version may run it (lean runtime)

    def batches(self) -> tuple[int, int, int]:
        opt = self.opt_batch if self.opt_batch is not None else max(self.min_batch, min(DEFAULT_OPT_BATCH,
                                                                                        self.max_batch))
        if not 1 <= self.min_batch <= opt <= self.max_batch:
            raise UserError(f"batch sizes must satisfy 1 <= {option('min_batch', self.min_batch)} <= "
                            f"{option('opt_batch', opt)} <= {option('max_batch', self.max_batch)}")
        if self.hardware_compatibility not in HARDWARE_COMPATIBILITY:
            raise UserError(f"{option('hardware_compatibility', self.hardware_compatibility)} is not one of "
                            f"{', '.join(HARDWARE_COMPATIBILITY)}")
        if not 0 <= self.opt_level <= 5:
            raise UserError(f"{option('opt_level', self.opt_level)} is outside TensorRT's 0..5")
        return self.min_batch, opt, self.max_batch


Profile = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
HARDWARE_COMPATIBILITY = ("none", "ampere+", "same-compute-capability")  # TensorRT's HardwareCompatibilityLevel


def parse_shapes(text: str) -> dict[str, Profile]:
    """One optimization profile from `NAME:MIN..OPT..MAX[,NAME:MIN..OPT..MAX]`, shapes written 1x3x256x256
    (trtexec's --minShapes/--optShapes/--maxShapes in one argument, one argument per profile)."""
    profile: dict[str, Profile] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, _, ranges = part.rpartition(":")
        shapes = ranges.split("..")
        try:
            parsed = tuple(tuple(int(d) for d in shape.split("x")) for shape in shapes)
        except ValueError:
            parsed = ()
        if not name or len(parsed) != 3:
            raise UserError(f"{option('shapes', part)} is not NAME:MIN..OPT..MAX with shapes like 1x3x256x256 "
                            "(e.g. input:1x3x256x256..4x3x512x512..8x3x1024x1024)")
        profile[name] = parsed  # type: ignore[assignment]
    if not profile:
        raise UserError(f"{option('shapes', repr(text))} names no input")
    return profile


def profile_text(profile: dict[str, Profile]) -> str:
    """`input 1x3x256x256..4x3x512x512..8x3x1024x1024`, per input."""
    return ", ".join(f"{name} " + "..".join("x".join(map(str, shape)) for shape in shapes)
                     for name, shapes in profile.items())


def _checked_profile(inputs: list[TensorSpec], profile: dict[str, Profile], index: int) -> dict[str, Profile]:
    known = {spec.name: spec for spec in inputs}
    if set(profile) != set(known):
        raise UserError(f"profile {index + 1} ({option('shapes', profile_text(profile))}) names inputs "
                        f"{sorted(profile)}; the model's are {sorted(known)}: give a range for each")
    for name, shapes in profile.items():
        spec = known[name]
        low, opt, high = shapes
        if any(len(shape) != len(spec.shape) for shape in shapes):
            raise UserError(f"profile {index + 1}: input {spec.describe()} has rank {len(spec.shape)}, the shapes "
                            f"{profile_text({name: shapes})} do not")
        fixed = [axis for axis, size in enumerate(spec.shape) if size != DYNAMIC
                 and any(shape[axis] != size for shape in shapes)]
        if fixed:
            raise UserError(f"profile {index + 1}: axis {fixed[0]} of input {spec.describe()} is fixed at "
                            f"{spec.shape[fixed[0]]}; {profile_text({name: shapes})} changes it")
        if not all(1 <= a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
            raise UserError(f"profile {index + 1}: {profile_text({name: shapes})} must satisfy 1 <= MIN <= OPT <= MAX "
                            "on every axis")
    return profile


def profile_shapes(inputs: list[TensorSpec], options: BuildOptions) -> list[dict[str, Profile]]:
    """The optimization profiles, each (min, opt, max) shape per input: `options.shapes` as given (checked against
    the inputs), else one profile with the batch options on a dynamic axis 0, every other axis as the model has it.

    A fixed-batch model gets that batch in all three (batch options that contradict it are an error); a dynamic
    axis other than the batch (a dynamic H×W) needs `shapes` to say what range to build for.
    """
    low, opt, high = options.batches()
    asked = (options.min_batch, options.opt_batch, options.max_batch)
    if options.shapes:
        if asked != (DEFAULT_MIN_BATCH, None, DEFAULT_MAX_BATCH):
            raise UserError(f"{option('shapes', 'NAME:MIN..OPT..MAX')} gives the batch range itself; drop the batch "
                            "options")
        return [_checked_profile(inputs, parse_shapes(profile) if isinstance(profile, str) else profile, index)
                for index, profile in enumerate(options.shapes)]
    profiles: dict[str, Profile] = {}
    for spec in inputs:
        if not spec.shape:
            raise UserError(f"input {spec.name!r} is a scalar; TensorRT profiles need a batch axis")
        if DYNAMIC in spec.shape[1:]:
            example = "x".join("H" if size == DYNAMIC else str(size) for size in spec.shape[1:])
            raise UserError(f"input {spec.describe()} has a dynamic axis besides the batch; give the range to build "
                            f"for with {option('shapes', f'{spec.name}:1x{example}..8x{example}..32x{example}')} "
                            "(sizes for each dynamic axis; repeat it for several profiles)")
        rest = spec.shape[1:]
        if spec.shape[0] == DYNAMIC:
            profiles[spec.name] = ((low, *rest), (opt, *rest), (high, *rest))
            continue
        fixed = spec.shape[0]
        if asked != (DEFAULT_MIN_BATCH, None, DEFAULT_MAX_BATCH) and (low, opt, high) != (fixed,) * 3:
            raise UserError(f"input {spec.describe()} has a fixed batch of {fixed}; drop the batch options or "
                            "re-export with a dynamic batch (onebyone export without --batch)")
        profiles[spec.name] = (spec.shape, spec.shape, spec.shape)
    return [profiles]


def profile_for(profiles: list[dict[str, Profile]], shapes: dict[str, tuple[int, ...]]) -> int | None:
    """The first profile whose ranges contain every input's shape (None: none does)."""
    for index, profile in enumerate(profiles):
        if all(all(low <= size <= high for size, low, high in zip(shapes[name], ranges[0], ranges[2], strict=True))
               for name, ranges in profile.items() if name in shapes):
            return index
    return None


def numpy_dtype(trt_type_name: str, tensor: str) -> np.dtype:
    """numpy dtype of a TensorRT DataType (by member name, e.g. "HALF")."""
    if trt_type_name not in TRT_TO_NUMPY:
        raise UserError(f"engine tensor {tensor!r} has TensorRT type {trt_type_name}, which has no numpy "
                        f"equivalent; keep graph inputs/outputs in {', '.join(TRT_TO_NUMPY)}")
    return np.dtype(TRT_TO_NUMPY[trt_type_name])


def buffer_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    """Bytes for one tensor of a concrete shape (how device and pinned host buffers are sized, at the max shape)."""
    if any(size < 0 for size in shape):
        raise ValueError(f"shape {shape} is not concrete")
    return math.prod(shape) * np.dtype(dtype).itemsize


@dataclasses.dataclass(frozen=True)
class PlanInfo:
    """The contents of `MODEL.plan.json`."""

    tensorrt: str
    gpu: str
    compute_capability: str  # "9.0"
    onnx: dict[str, str]  # {"name": ..., "sha256": ...}
    plan_sha256: str
    precision: str | None
    profiles: list[dict[str, dict[str, list[int]]]]  # per profile, input → {"min": [...], "opt": [...], "max": [...]}
    build_seconds: float
    options: dict[str, Any]
    metadata: dict[str, str]  # the ONNX file's onebyone.* metadata (preprocessing, task)
    io: dict[str, list[dict[str, Any]]]  # {"inputs": [...], "outputs": [...]}: runtime.tensors.spec_records
    cuda: str = ""  # the CUDA version the build machine's driver supports ("" in records written before it)
    format: str = PLAN_FORMAT

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def plan_info_path(plan: Path) -> Path:
    return plan.with_name(plan.name + ".json")


def profiles_record(profiles: list[dict[str, Profile]]) -> list[dict[str, dict[str, list[int]]]]:
    return [{name: {"min": list(low), "opt": list(opt), "max": list(high)} for name, (low, opt, high) in p.items()}
            for p in profiles]


def profiles_from_record(record: list[dict[str, dict[str, list[int]]]]) -> list[dict[str, Profile]]:
    return [{name: (tuple(r["min"]), tuple(r["opt"]), tuple(r["max"])) for name, r in p.items()} for p in record]


def read_plan_info(plan: Path) -> PlanInfo:
    """Load `MODEL.plan.json` and prove the plan is the file it describes (a truncated or altered plan is refused
    before TensorRT sees it)."""
    if not plan.is_file():
        raise UserError(f"{plan} does not exist or is not a file")
    info_path = plan_info_path(plan)
    if not info_path.is_file():
        raise UserError(f"{plan} has no {info_path.name} beside it, so its TensorRT version and GPU are unknown; "
                        f"rebuild it with `onebyone build MODEL.onnx -o {plan}`")
    try:
        raw = json.loads(info_path.read_text())
        if raw.get("format") not in PLAN_FORMATS:
            raise ValueError(f"format is {raw.get('format')!r}, expected {PLAN_FORMAT!r}")
        if isinstance(raw.get("profiles"), dict):  # onebyone.plan/1: one profile
            raw |= {"profiles": [raw["profiles"]], "format": PLAN_FORMAT}
        info = PlanInfo(**raw)
    except (ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{info_path} is not a valid plan record ({err}); rebuild the plan with `onebyone build`") \
            from None
    if sha256_file(plan) != info.plan_sha256:
        raise UserError(f"{plan} is corrupted or was replaced: its sha256 differs from the one recorded in "
                        f"{info_path.name}; rebuild it with `onebyone build`")
    return info


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def where_it_runs(info: PlanInfo) -> str:
    """Where a plan may run, in words, from how it was built (TensorRT developer guide: version compatibility — a
    version-compatible plan runs on later TensorRT releases of its major version, with the lean runtime it carries;
    hardware compatibility — AMPERE_PLUS on every GPU of compute capability 8.0 or later, SAME_COMPUTE_CAPABILITY on
    every GPU of the builder's; otherwise the builder's TensorRT and GPU architecture)."""
    major = info.tensorrt.split(".")[0]
    versions = (f"TensorRT {info.tensorrt} or a later {major}.x (version-compatible)"
                if info.options.get("version_compatible") else f"TensorRT {info.tensorrt} only")
    level = info.options.get("hardware_compatibility", "none")
    gpus = {"ampere+": "any GPU of compute capability 8.0 or later (Ampere+)",
            "same-compute-capability": f"any GPU of compute capability {info.compute_capability}"}.get(
        level, f"GPUs of compute capability {info.compute_capability} like the {info.gpu} it was built on")
    return f"{versions}, on {gpus}"


def compatibility_problems(info: PlanInfo, tensorrt_version: str, compute_capability: str, gpu: str) -> list[str]:
    """Why a plan cannot run with this TensorRT and GPU (`where_it_runs`); empty when it can."""
    problems = []
    built, here = _version(info.tensorrt), _version(tensorrt_version)
    later_same_major = here[:1] == built[:1] and here >= built
    if not (here == built or (info.options.get("version_compatible") and later_same_major)):
        problems.append(f"TensorRT {info.tensorrt}, this machine has {tensorrt_version}")
    level = info.options.get("hardware_compatibility", "none")
    fits = (_version(compute_capability) >= (8, 0) if level == "ampere+"
            else compute_capability == info.compute_capability)
    if not fits:
        problems.append(f"compute capability {info.compute_capability} ({info.gpu}, hardware compatibility {level}), "
                        f"this GPU is {compute_capability} ({gpu})")
    return problems


def check_compatible(info: PlanInfo, plan: Path, tensorrt_version: str, compute_capability: str, gpu: str) -> None:
    """Refuse a plan built for another TensorRT version or GPU architecture, naming both and the fix."""
    problems = compatibility_problems(info, tensorrt_version, compute_capability, gpu)
    if problems:
        raise UserError(f"{plan} was built for {'; and for '.join(problems)}; it runs on {where_it_runs(info)} — "
                        f"rebuild it here with `onebyone build {info.onnx['name']} -o {plan}`")
