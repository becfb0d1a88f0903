"""The pipeline's stages as Python functions: each takes a typed options object (its defaults are the CLI's), does
what the `onebyone <stage>` command does, and returns a result object instead of printing. The CLI is a shell over
these (runtime/commands/).

Heavy modules (torch, onnxruntime, onnx) load when a stage runs, not when `onebyone` is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from onebyone.optimize.precision.quantize import QuantizeOptions, QuantizeResult
    from onebyone.runtime.parity.check import Engine


def quantize(source: str | Path, options: QuantizeOptions | None = None, **fields: object) -> QuantizeResult:
    """Write `source` (an FP32 ONNX file) at another precision: `quantize(path, precision="int8", calib=DATA)` or
    `quantize(path, QuantizeOptions(...))`. An INT8 file written into a bundle is then kernel-checked on every
    installed CPU engine (recorded for `auto`; the result's `kernel_checks` and `auto_engine`). Raises UserError for
    options or inputs that cannot work, CheckFailed when the written file fails its golden check (nothing written)."""
    from onebyone.optimize.precision.quantize import QuantizeOptions
    from onebyone.optimize.precision.quantize import quantize as write

    if options is None:
        options = QuantizeOptions(**fields)
    elif fields:
        raise TypeError("give options or keyword fields, not both")
    result = write(Path(source), options, _bf16_engine() if options.precision == "bf16" else None)
    if result.precision == "int8" and result.in_bundle:
        from onebyone.runtime.sessions.engine_checks import check_and_record
        from onebyone.runtime.sessions.opening import auto_backend

        result.kernel_checks = check_and_record(result.output.parent, result.output.name)
        result.auto_engine = auto_backend(result.output)
    return result


def _bf16_engine() -> Engine:
    """OpenVINO with its BF16 hint, as the golden check of a bf16 file; refused where this CPU has no BF16."""
    from onebyone.runtime.core.cpu import this_cpu
    from onebyone.runtime.core.errors import UserError
    from onebyone.runtime.parity.check import Engine
    from onebyone.runtime.sessions.locate import Target
    from onebyone.runtime.sessions.openvino_backend import OpenVinoSession, bf16_refusal, import_openvino

    import_openvino()
    if (refusal := bf16_refusal(this_cpu())) is not None:
        raise UserError(refusal)

    def open_openvino(path: Path) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
        return OpenVinoSession(Target("onnx", path, None, None, None, None, None)).run_batched

    return Engine("OpenVINO bf16", open_openvino)
