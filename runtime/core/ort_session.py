"""The one way onebyone builds an ONNX Runtime session.

`optimization` names ORT's graph optimization level: "none" runs the file as written (every DequantizeLinear feeds a
float op, nothing is fused: the reference semantics), "basic" folds constants only (calibration), "extended" and
"all" add ORT's fusions ("all" is how artifacts deploy). ORT's own log is kept to errors; a file ORT cannot load is
a UserError naming it.

Threads: ORT sizes its intra-op pool by the machine's physical cores, whatever CPUs the process may run on, so a
process pinned to fewer (taskset, a container's cpuset, the serve bench's pinned layout) runs more threads than it
has cores, and they take turns on it, slower than one thread would be. The pool is sized by the process's CPU
affinity where that is narrower. ORT's pool threads also spin on for milliseconds after a Run returns
(`session.intra_op.allow_spinning`), taking the CPU from whatever the process does next — the server's request
handling, another session's run. Every session sets `session.force_spinning_stop`: its threads spin during a run and
stop when it returns; the cost is waking them at the next run (docs/runtime.md#threads has the measurements).

Nothing here changes what a session computes: threads and spinning change speed only, and every ORT transformer
stays on, as in a plain `onnxruntime.InferenceSession` or Triton's onnxruntime backend. A file that computes
something else once ORT has rewritten it is the file's defect: the golden check in plain sessions at each level
(runtime/parity/check.py, `STOCK_ONNXRUNTIME`) catches it, and the Q/DQ writer states biases so that ORT's
WeightBiasQuantization has nothing to rewrite (optimize/precision/qdq.py).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from onebyone.runtime.core.errors import UserError

LEVELS = ("none", "basic", "extended", "all")
CPU = ("CPUExecutionProvider",)
SPINNING_STOPS = {"session.force_spinning_stop": "1"}  # see the module docstring


def intra_op_threads(allowed: int, total: int) -> int | None:
    """The intra-op thread count for a process allowed on `allowed` of the machine's `total` CPUs; None leaves
    ORT's default."""
    return allowed if allowed < total else None


def affinity_threads() -> int | None:
    """The thread count for this process's CPU affinity where it is narrower than the machine; else None."""
    if not hasattr(os, "sched_getaffinity"):  # macOS, Windows: no affinity to read
        return None
    return intra_op_threads(len(os.sched_getaffinity(0)), os.cpu_count() or 1)


def ort_session(model: Path | bytes, optimization: str, *, providers: Sequence[str] = CPU,
                provider_options: Sequence[dict[str, Any]] | None = None, config: Mapping[str, str] | None = None,
                optimized_model_path: Path | None = None, plain: bool = False) -> Any:
    """An `onnxruntime.InferenceSession` over a file path or a serialized model. `config`: session config entries
    (e.g. {"session.x64quantprecision": "1"}); `optimized_model_path`: where ORT writes the graph it optimized;
    `plain`: the level and nothing else but a quiet log — a user's `InferenceSession(path)` (level "all") or
    Triton's onnxruntime backend (its `optimization.graph.level` picks the level)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # ORT's process-wide log too: errors only (warnings reach no user action)
    level = ort.GraphOptimizationLevel
    levels = (level.ORT_DISABLE_ALL, level.ORT_ENABLE_BASIC, level.ORT_ENABLE_EXTENDED, level.ORT_ENABLE_ALL)
    options = ort.SessionOptions()
    options.graph_optimization_level = dict(zip(LEVELS, levels, strict=True))[optimization]
    options.log_severity_level = 3
    if not plain and (threads := affinity_threads()) is not None:
        options.intra_op_num_threads = threads
    for key, value in ({} if plain else {**SPINNING_STOPS, **(config or {})}).items():
        options.add_session_config_entry(key, value)
    if optimized_model_path is not None:
        options.optimized_model_filepath = str(optimized_model_path)
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                    providers=list(providers), provider_options=provider_options)
    except Exception as err:  # ORT raises its own exception classes for unreadable or invalid models
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        origin = "the model" if isinstance(model, bytes) else model
        raise UserError(f"ONNX Runtime cannot load {origin}: {first}") from None
