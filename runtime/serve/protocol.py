"""The KServe v2 / Open Inference Protocol infer request and response, with Triton's binary tensor extension — as
plain functions over bytes, no HTTP.

Request body: a JSON header, optionally followed by raw little-endian tensor bytes; the header's length is in the
`Inference-Header-Content-Length` HTTP header (absent: the body is all JSON). An input carries its values either as
JSON `data` (flat or nested, row-major) or as `parameters.binary_data_size` bytes taken, in input order, from the
binary part. Outputs are returned as JSON `data`, or as binary when the output asks for `binary_data` (or the request
for `binary_data_output`); the response then carries its own header length. Every malformed request is a
ProtocolError (HTTP 400) that says what is wrong.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

DATATYPES: dict[str, np.dtype] = {name: np.dtype(dtype) for name, dtype in {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"


class ProtocolError(Exception):
    """A malformed request: answered with HTTP 400 and `{"error": message}`."""


def datatype_of(dtype: np.dtype) -> str:
    """KServe datatype name of a numpy dtype."""
    for name, candidate in DATATYPES.items():
        if candidate == dtype:
            return name
    raise ValueError(f"numpy dtype {dtype} has no KServe v2 datatype")


@dataclasses.dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: inputs by name, and which outputs to return (None: all) in which encoding."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: dict[str, bool] | None  # requested output name → binary
    binary_output: bool  # the request-level `binary_data_output` default


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    if header_length is None:
        size = len(body)
    else:
        try:
            size = int(header_length)
        except ValueError:
            raise ProtocolError(f"{HEADER_LENGTH} {header_length!r} is not an integer") from None
        if not 0 < size <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {size} is outside the body's {len(body)} bytes")
    try:
        header = json.loads(bytes(body[:size]))
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"the request header is not valid JSON: {err}") from None
    return _object(header, "the request"), memoryview(body)[size:]


def _shape(tensor: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ProtocolError(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    if any(d < 0 for d in shape):
        raise ProtocolError(f"input {name!r}: shape {shape} has a negative dimension")
    return tuple(shape)


def _datatype(tensor: dict[str, Any], name: str) -> np.dtype:
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r}: unsupported datatype {datatype!r}; one of {', '.join(DATATYPES)}")
    return DATATYPES[datatype]


def _tensor(tensor: dict[str, Any], binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """One input → (name, array, new offset into the binary part)."""
    name = tensor.get("name")
    if not isinstance(name, str):
        raise ProtocolError(f"every input needs a string name, got {name!r}")
    shape, dtype = _shape(tensor, name), _datatype(tensor, name)
    count = math.prod(shape)
    parameters = _object(tensor.get("parameters", {}), f"input {name!r} parameters")
    if "binary_data_size" in parameters:
        size = parameters["binary_data_size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ProtocolError(f"input {name!r}: binary_data_size must be a non-negative integer, got {size!r}")
        if size != count * dtype.itemsize:
            raise ProtocolError(f"input {name!r}: binary_data_size {size} does not match shape {list(shape)} of "
                                f"{tensor['datatype']} ({count * dtype.itemsize} bytes)")
        if offset + size > len(binary):
            raise ProtocolError(f"input {name!r}: needs {size} bytes of binary data, only {len(binary) - offset} "
                                "remain (truncated body?)")
        array = np.frombuffer(binary[offset:offset + size], dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
        return name, array.reshape(shape), offset + size
    if "data" not in tensor:
        raise ProtocolError(f"input {name!r} has neither data nor parameters.binary_data_size")
    try:
        array = np.asarray(tensor["data"], dtype=dtype).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        raise ProtocolError(f"input {name!r}: data is not a list of {tensor['datatype']} values ({err})") from None
    if array.size != count:
        raise ProtocolError(f"input {name!r}: {array.size} values for shape {list(shape)} ({count} expected)")
    return name, array.reshape(shape), offset


def _requested_outputs(header: dict[str, Any], binary_default: bool) -> dict[str, bool] | None:
    if "outputs" not in header:
        return None
    outputs = header["outputs"]
    if not isinstance(outputs, list):
        raise ProtocolError("outputs must be a list")
    requested: dict[str, bool] = {}
    for output in outputs:
        output = _object(output, "each requested output")
        name = output.get("name")
        if not isinstance(name, str):
            raise ProtocolError(f"every requested output needs a string name, got {name!r}")
        parameters = _object(output.get("parameters", {}), f"output {name!r} parameters")
        requested[name] = bool(parameters.get("binary_data", binary_default))
    return requested


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    header, binary = _split_body(body, header_length)
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"id must be a string, got {request_id!r}")
    parameters = _object(header.get("parameters", {}), "parameters")
    binary_default = bool(parameters.get("binary_data_output", False))
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("inputs must be a non-empty list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in raw_inputs:
        name, array, offset = _tensor(_object(tensor, "each input"), binary, offset)
        if name in inputs:
            raise ProtocolError(f"input {name!r} appears twice")
        inputs[name] = array
    if offset != len(binary):
        raise ProtocolError(f"the body has {len(binary) - offset} bytes of binary data no input claims")
    return InferRequest(request_id, inputs, _requested_outputs(header, binary_default), binary_default)


def encode_infer_response(model: str, version: str, request: InferRequest,
                          outputs: dict[str, np.ndarray]) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (for HEADER_LENGTH)."""
    wanted = request.outputs if request.outputs is not None else dict.fromkeys(outputs, request.binary_output)
    tensors, chunks = [], []
    for name, binary in wanted.items():
        array = np.ascontiguousarray(outputs[name])
        tensor: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype), "shape": list(array.shape)}
        if binary:
            raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = array.reshape(-1).tolist()
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": tensors}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":")).encode()
    return (header + b"".join(chunks), len(header)) if chunks else (header, None)
