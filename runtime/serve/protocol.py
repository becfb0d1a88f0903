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
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from onebyone.runtime.bundle.accuracy import top_k

DATATYPES: dict[str, np.dtype] = {name: np.dtype(dtype) for name, dtype in {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}.items()}
HEADER_LENGTH = "Inference-Header-Content-Length"
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics"]  # Triton's names
MAX_RANK = 32  # numpy's limit is 64; no model here takes more than a handful
MAX_TIMEOUT_US = 2**63 - 1
HEADER_LENGTH_DIGITS = re.compile("[0-9]{1,18}")
SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a \uD800–\uDFFF escape: maybe a lone surrogate
MAX_ELEMENTS = 1 << 40  # the product of a shape's non-zero dimensions (a zero beside huge dims is still nonsense)


class ProtocolError(Exception):
    """A malformed request: answered with HTTP 400 and `{"error": message}`."""


def datatype_of(dtype: np.dtype) -> str:
    """KServe datatype name of a numpy dtype."""
    for name, candidate in DATATYPES.items():
        if candidate == dtype:
            return name
    raise ValueError(f"numpy dtype {dtype} has no KServe v2 datatype")


@dataclasses.dataclass(frozen=True)
class RequestedOutput:
    binary: bool
    class_count: int = 0  # > 0: Triton's classification extension, the top class_count as "value:index" strings


@dataclasses.dataclass(frozen=True)
class InferRequest:
    """A parsed infer request: inputs by name, and which outputs to return (None: all) in which encoding."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: dict[str, RequestedOutput] | None  # None (or `outputs: []`): every output
    binary_output: bool  # the request-level `binary_data_output` default
    timeout_us: int = 0  # Triton's `timeout` parameter: give up on the request after this long (0: never)


def checked_timeout(value: object) -> int:
    """Triton's `timeout` parameter: microseconds, an int64 (what its gRPC parameter holds)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_TIMEOUT_US:
        shown = repr(value) if not isinstance(value, int) or value.bit_length() < 128 else "a larger number"
        raise ProtocolError(f"timeout must be an integer of microseconds from 0 to 2^63 − 1, got {shown}")
    return value


def header_length_of(values: list[str]) -> int | None:
    """The `Inference-Header-Content-Length` header (every value the request gives) as a byte count: one value, ASCII
    digits only (int() would also take other scripts' digits, signs and spaces, and refuses more than 4,300 digits);
    the same header with different values is a conflict, not a choice."""
    if not values:
        return None
    if len(set(values)) > 1:
        raise ProtocolError(f"{HEADER_LENGTH} is given {len(values)} times with different values; give it once")
    text = values[0]
    if not HEADER_LENGTH_DIGITS.fullmatch(text):
        shown = text if len(text) <= 40 else f"{text[:40]}… ({len(text)} characters)"
        raise ProtocolError(f"{HEADER_LENGTH} {shown!r} is not a byte count (ASCII digits)")
    return int(text)


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return value


def _split_body(body: bytes, header_length: int | None) -> tuple[dict[str, Any], memoryview]:
    if header_length is None:
        size = len(body)
    else:
        size = header_length
        if not 0 < size <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {size} is outside the body's {len(body)} bytes")
    try:
        text = bytes(body[:size]).decode("utf-8")  # strictly: json.loads(bytes) would also take UTF-16/32 and a BOM
        header = json.loads(text)
    except (UnicodeDecodeError, ValueError) as err:
        raise ProtocolError(f"the request header is not valid JSON (UTF-8, no byte order mark): {err}") from None
    except RecursionError:
        raise ProtocolError("the request header is nested too deeply to be an infer request") from None
    if SURROGATE_ESCAPE.search(text):  # rare: only then pay for the exact check
        try:
            json.dumps(header, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError("the request header has a string with a lone surrogate (\\uD800–\\uDFFF without "
                                "its pair): strings must be valid Unicode") from None
    return _object(header, "the request"), memoryview(body)[size:]


def checked_shape(shape: Any, name: str) -> tuple[int, ...]:
    """An input's shape: a list of non-negative integers, at most MAX_RANK of them, not impossibly large."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ProtocolError(f"input {name!r}: shape must be a list of integers, got {shape!r}")
    if any(d < 0 for d in shape):
        raise ProtocolError(f"input {name!r}: shape {shape} has a negative dimension")
    if len(shape) > MAX_RANK:
        raise ProtocolError(f"input {name!r}: shape has {len(shape)} dimensions; at most {MAX_RANK}")
    if math.prod(d for d in shape if d) > MAX_ELEMENTS:
        raise ProtocolError(f"input {name!r}: shape {shape} is too large")
    return tuple(shape)


def checked_datatype(datatype: Any, name: str) -> np.dtype:
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r}: unsupported datatype {datatype!r}; one of {', '.join(DATATYPES)}")
    return DATATYPES[datatype]


def reshaped(array: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    try:
        return array.reshape(shape)
    except ValueError as err:  # e.g. zero elements in a shape numpy cannot represent
        raise ProtocolError(f"input {name!r}: shape {list(shape)} is too large ({err})") from None


def _tensor(tensor: dict[str, Any], binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """One input → (name, array, new offset into the binary part)."""
    name = tensor.get("name")
    if not isinstance(name, str):
        raise ProtocolError(f"every input needs a string name, got {name!r}")
    shape, dtype = checked_shape(tensor.get("shape"), name), checked_datatype(tensor.get("datatype"), name)
    count = math.prod(shape)
    parameters = _object(tensor.get("parameters", {}), f"input {name!r} parameters")
    refuse_shared_memory(parameters, f"input {name!r}")
    if "binary_data_size" in parameters:
        if "data" in tensor:
            raise ProtocolError(f"input {name!r} has both data and parameters.binary_data_size; give its values once")
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
        return name, reshaped(array, shape, name), offset + size
    if "data" not in tensor:
        raise ProtocolError(f"input {name!r} has neither data nor parameters.binary_data_size")
    try:
        array = np.asarray(tensor["data"], dtype=dtype).reshape(-1)
    except (TypeError, ValueError, OverflowError) as err:
        raise ProtocolError(f"input {name!r}: data is not a list of {tensor['datatype']} values ({err})") from None
    if array.size != count:
        raise ProtocolError(f"input {name!r}: {array.size} values for shape {list(shape)} ({count} expected)")
    return name, reshaped(array, shape, name), offset


def _flag(parameters: dict[str, Any], key: str, default: bool) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"{key} must be true or false, got {value!r}")
    return value


def refuse_shared_memory(parameters: Any, what: str) -> None:
    """A tensor that names a shared memory region: this server registers none (the shared memory extension is not
    implemented), so the region cannot exist — Triton's answer to an unregistered region — and the data is not sent
    inline either."""
    if "shared_memory_region" in parameters:
        raise ProtocolError(f"{what}: shared memory region {str(parameters['shared_memory_region'])[:64]!r} is not "
                            "registered (onebyone serve registers none); send the data inline")


def _requested_outputs(header: dict[str, Any], binary_default: bool) -> dict[str, RequestedOutput] | None:
    """The outputs asked for; None when the request names none (no `outputs`, or an empty list, as Triton reads it)."""
    outputs = header.get("outputs", [])
    if not isinstance(outputs, list):
        raise ProtocolError("outputs must be a list")
    requested: dict[str, RequestedOutput] = {}
    for output in outputs:
        output = _object(output, "each requested output")
        name = output.get("name")
        if not isinstance(name, str):
            raise ProtocolError(f"every requested output needs a string name, got {name!r}")
        parameters = _object(output.get("parameters", {}), f"output {name!r} parameters")
        refuse_shared_memory(parameters, f"output {name!r}")
        class_count = parameters.get("classification", 0)
        if "classification" in parameters and (not isinstance(class_count, int) or isinstance(class_count, bool)
                                               or class_count <= 0):
            raise ProtocolError(f"output {name!r}: classification must be a positive integer, got {class_count!r}")
        requested[name] = RequestedOutput(_flag(parameters, "binary_data", binary_default), class_count)
    return requested or None


def parse_infer_request(body: bytes, header_length: int | None) -> InferRequest:
    """The request in `body`, whose first `header_length` bytes are its JSON header (None: all of it)."""
    header, binary = _split_body(body, header_length)
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"id must be a string, got {request_id!r}")
    parameters = _object(header.get("parameters", {}), "parameters")
    binary_default = _flag(parameters, "binary_data_output", False)
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
    return InferRequest(request_id, inputs, _requested_outputs(header, binary_default), binary_default,
                        checked_timeout(parameters.get("timeout", 0)))


def classify(name: str, scores: np.ndarray, class_count: int, labels: Sequence[str] | None) -> np.ndarray:
    """Triton's classification extension: per row of N × classes scores, the top `class_count` as "value:index"
    strings, or "value:index:label" when the model has one label per class; best first (ties keep class order);
    values as the shortest text that reads back as the same float32."""
    if scores.ndim != 2:
        raise ProtocolError(f"output {name!r} has shape {list(scores.shape)}; classification needs N × classes")
    named = labels is not None and len(labels) == scores.shape[1]
    top = top_k(scores, class_count)
    return np.array([[f"{np.format_float_positional(row[c], unique=True, trim='-')}:{c}"
                      + (f":{labels[c]}" if named else "") for c in classes]
                     for row, classes in zip(scores, top, strict=True)], dtype=object)


def _json_values(array: np.ndarray) -> list:
    """Row-major values for JSON `data`: JSON has no NaN or ±Inf, so those are null (clients read NaN back)."""
    if array.dtype == object:
        return [str(v) for v in array.reshape(-1)]
    values = array.reshape(-1).tolist()
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        values = [v if math.isfinite(v) else None for v in values]
    return values


def binary_values(array: np.ndarray) -> bytes:
    """Raw little-endian bytes; BYTES elements as a 4-byte little-endian length and the UTF-8 text (Triton's form)."""
    if array.dtype == object:
        encoded = [str(v).encode() for v in array.reshape(-1)]
        return b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def answered_outputs(request: InferRequest, outputs: dict[str, np.ndarray], labels: Sequence[str] | None
                     ) -> list[tuple[str, np.ndarray, str, RequestedOutput]]:
    """(name, array, datatype, how it was asked for) of each output to answer with, in the order asked for;
    classification outputs as their BYTES strings (with the model's class `labels`, where it has them)."""
    wanted = request.outputs or {name: RequestedOutput(request.binary_output) for name in outputs}
    answered = []
    for name, requested in wanted.items():
        array = np.ascontiguousarray(outputs[name])
        if requested.class_count:
            array = classify(name, array, requested.class_count, labels)
        answered.append((name, array, "BYTES" if array.dtype == object else datatype_of(array.dtype), requested))
    return answered


def encode_infer_response(model: str, version: str, request: InferRequest, outputs: dict[str, np.ndarray],
                          labels: Sequence[str] | None) -> tuple[bytes, int | None]:
    """The response body and, when any output is binary, the JSON header's length (for HEADER_LENGTH)."""
    tensors, chunks = [], []
    for name, array, datatype, requested in answered_outputs(request, outputs, labels):
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if requested.binary:
            raw = binary_values(array)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _json_values(array)
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": tensors}
    if request.id is not None:
        response["id"] = request.id
    header = json.dumps(response, separators=(",", ":"), allow_nan=False).encode()
    return (header + b"".join(chunks), len(header)) if chunks else (header, None)
