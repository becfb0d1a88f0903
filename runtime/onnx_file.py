"""Reading a user's ONNX file as onnx-ir, with one clear message for every way it can be wrong."""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as ir

from runtime.errors import UserError


def load_model(path: Path) -> ir.Model:
    """Load and check an ONNX file (external data included); any problem is a UserError."""
    if not path.is_file():
        raise UserError(f"{path} does not exist or is not a file")
    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as err:  # the protobuf decoder fails with several exception types
        raise UserError(f"{path} is not a readable ONNX file ({type(err).__name__}); "
                        "is it truncated or another format?") from None
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(f"{path} is not a valid ONNX model (onnx.checker: {first}); re-export it") from None
    return ir.load(path)
