"""The one way onebyone builds an ONNX Runtime session.

`optimization` names ORT's graph optimization level: "none" runs the file as written (every DequantizeLinear feeds a
float op, nothing is fused: the reference semantics), "basic" folds constants only (calibration), "extended" and
"all" add ORT's fusions ("all" is how artifacts deploy). ORT's own log is kept to errors; a file ORT cannot load is
a UserError naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from onebyone.runtime.core.errors import UserError

LEVELS = ("none", "basic", "extended", "all")
CPU = ("CPUExecutionProvider",)


def ort_session(model: Path | bytes, optimization: str, *, providers: Sequence[str] = CPU,
                provider_options: Sequence[dict[str, Any]] | None = None, config: Mapping[str, str] | None = None,
                optimized_model_path: Path | None = None) -> Any:
    """An `onnxruntime.InferenceSession` over a file path or a serialized model. `config`: session config entries
    (e.g. {"session.x64quantprecision": "1"}); `optimized_model_path`: where ORT writes the graph it optimized."""
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel
    levels = (level.ORT_DISABLE_ALL, level.ORT_ENABLE_BASIC, level.ORT_ENABLE_EXTENDED, level.ORT_ENABLE_ALL)
    options = ort.SessionOptions()
    options.graph_optimization_level = dict(zip(LEVELS, levels, strict=True))[optimization]
    options.log_severity_level = 3
    for key, value in (config or {}).items():
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
