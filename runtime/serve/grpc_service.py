"""Triton's `inference.GRPCInferenceService` over grpc.aio, on the same event loop, models, batchers, checks and
statistics as the HTTP server. The message and service definitions are the ones tritonclient ships (generated from
Triton's published .proto), so a client moving between Triton and onebyone keeps its transport.

Implemented: ServerLive, ServerReady, ServerMetadata, ModelReady, ModelMetadata, ModelConfig, ModelStatistics,
ModelInfer (raw contents, or typed contents per datatype — never both; outputs always raw, classification as BYTES).
The rest (repository control, shared memory, tracing, streaming) answers UNIMPLEMENTED with one line naming the
method, logged once per method: no client can flood the log with the generated base class's tracebacks.
Status codes as Triton's: INVALID_ARGUMENT for a malformed request, NOT_FOUND for an unknown model or version,
UNAVAILABLE for a model that is not ready.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceServicer, add_GRPCInferenceServiceServicer_to_server

from onebyone.runtime.core.errors import UserError, option
from onebyone.runtime.core.version import __version__
from onebyone.runtime.serve.batcher import QueueFull, Tensors
from onebyone.runtime.serve.inference import TimedOut, answer
from onebyone.runtime.serve.models import ModelEntry
from onebyone.runtime.serve.protocol import (
    EXTENSIONS,
    InferRequest,
    ProtocolError,
    RequestedOutput,
    answered_outputs,
    binary_values,
    checked_datatype,
    checked_shape,
    checked_timeout,
    refuse_shared_memory,
    reshaped,
)

SERVICE = "inference.GRPCInferenceService"
log = logging.getLogger("onebyone.serve")
TYPED_CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents", "INT32": "int_contents",
                  "INT64": "int64_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
                  "UINT32": "uint_contents", "UINT64": "uint64_contents", "FP32": "fp32_contents",
                  "FP64": "fp64_contents"}  # FP16 has no typed field: raw only


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_request(request: pb.ModelInferRequest) -> InferRequest:
    """The protobuf request as the transport-neutral InferRequest; ProtocolError for anything malformed."""
    if not request.inputs:
        raise ProtocolError("inputs must be a non-empty list")
    raw = list(request.raw_input_contents)
    if raw and any(tensor.HasField("contents") for tensor in request.inputs):
        raise ProtocolError("the request gives both raw_input_contents and typed contents; give each input once")
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs; give one per input")
    inputs: dict[str, np.ndarray] = {}
    for index, tensor in enumerate(request.inputs):
        name = tensor.name
        refuse_shared_memory(_strings(tensor.parameters), f"input {name!r}")
        shape, dtype = checked_shape(list(tensor.shape), name), checked_datatype(tensor.datatype, name)
        count = math.prod(shape)
        if raw:
            if len(raw[index]) != count * dtype.itemsize:
                raise ProtocolError(f"input {name!r}: {len(raw[index])} raw bytes for shape {list(shape)} of "
                                    f"{tensor.datatype} ({count * dtype.itemsize} expected)")
            array = np.frombuffer(raw[index], dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
        else:
            field = TYPED_CONTENTS.get(tensor.datatype)
            if field is None:
                raise ProtocolError(f"input {name!r}: {tensor.datatype} travels as raw_input_contents only")
            array = _typed(name, tensor.datatype, getattr(tensor.contents, field), dtype)
            if array.size != count:
                raise ProtocolError(f"input {name!r}: {array.size} values for shape {list(shape)} ({count} expected)")
        if name in inputs:
            raise ProtocolError(f"input {name!r} appears twice")
        inputs[name] = reshaped(array, shape, name)
    outputs = {}
    for output in request.outputs:
        refuse_shared_memory(_strings(output.parameters), f"output {output.name!r}")
        parameter = output.parameters.get("classification")
        class_count = 0
        if parameter is not None:
            class_count = parameter.int64_param
            if parameter.WhichOneof("parameter_choice") != "int64_param" or class_count <= 0:
                raise ProtocolError(f"output {output.name!r}: classification must be a positive integer")
        outputs[output.name] = RequestedOutput(binary=True, class_count=class_count)
    timeout = request.parameters.get("timeout")
    timeout_us = checked_timeout(timeout.int64_param if timeout.WhichOneof("parameter_choice") == "int64_param"
                                 else None) if timeout is not None else 0
    return InferRequest(request.id or None, inputs, outputs or None, True, timeout_us)


def _strings(parameters: Any) -> dict[str, str]:
    """A protobuf parameter map's string values by key (the shared memory keys are strings)."""
    return {key: value.string_param for key, value in parameters.items()}


def _typed(name: str, datatype: str, values: Any, dtype: np.dtype) -> np.ndarray:
    """Typed contents as `dtype`. The protobuf field is wider than the narrow integer types (int_contents is int32
    for INT8 and INT16), so a value outside the datatype's range is refused rather than wrapped."""
    if dtype.kind in "iu" and len(values):
        bounds = np.iinfo(dtype)
        low, high = min(values), max(values)
        if low < bounds.min or high > bounds.max:
            wrong = low if low < bounds.min else high
            raise ProtocolError(f"input {name!r}: value {wrong} is out of {datatype}'s range "
                                f"[{bounds.min}, {bounds.max}]")
    return np.asarray(values, dtype=dtype)


def encode_response(entry: ModelEntry, request: InferRequest, outputs: Tensors) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=entry.name, model_version=entry.version, id=request.id or "")
    for name, array, datatype, _ in answered_outputs(request, outputs, entry.labels):
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(binary_values(array))
    return response


def _unimplemented(method: str) -> Callable[..., Any]:
    """A method onebyone does not serve: UNIMPLEMENTED in one line, logged the first time a client calls it."""

    async def answer(self: InferenceService, request: object, context: grpc.aio.ServicerContext) -> None:
        if method not in self._refused:
            self._refused.add(method)
            log.info("a client called %s, which onebyone serve does not implement (logged once)", method)
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by onebyone serve")

    return answer


class InferenceService(GRPCInferenceServiceServicer):
    def __init__(self, entries: dict[str, ModelEntry], settings: dict[str, Any]) -> None:
        self._entries = entries
        self._settings = settings
        self._refused: set[str] = set()  # unimplemented methods a client has called


    def _entry(self, name: str, version: str, need_ready: bool = True) -> ModelEntry:
        entry = self._entries.get(name)
        if entry is None:
            raise _Refused(grpc.StatusCode.NOT_FOUND,
                           f"unknown model {name!r}; this server has {', '.join(self._entries) or 'no models'}")
        if version and version != entry.version:
            raise _Refused(grpc.StatusCode.NOT_FOUND, f"model {name!r} has no version {version!r}; it has "
                                                      f"{entry.version!r}")
        if need_ready and not entry.ready:
            raise _Refused(grpc.StatusCode.UNAVAILABLE, f"model {name!r} is not ready: {entry.error}")
        return entry

    async def _call(self, context: grpc.aio.ServicerContext, respond: Any, request: object = None) -> Any:
        try:
            if isinstance(request, Undecodable):
                raise ProtocolError(f"the request is not a {request.message} (protobuf): {request.error}")
            return await respond()
        except _Refused as err:
            await context.abort(err.code, str(err))
        except (ProtocolError, UserError) as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except (QueueFull, TimedOut) as err:
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(err))

    async def ServerLive(self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
                          ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=all(entry.ready for entry in self._entries.values()))

    async def ServerMetadata(self, request: pb.ServerMetadataRequest,
                             context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="onebyone", version=__version__, extensions=EXTENSIONS)

    async def ModelReady(self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ModelReadyResponse:
        async def respond() -> pb.ModelReadyResponse:
            return pb.ModelReadyResponse(ready=self._entry(request.name, request.version, need_ready=False).ready)

        return await self._call(context, respond, request)

    async def ModelMetadata(self, request: pb.ModelMetadataRequest,
                            context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        async def respond() -> pb.ModelMetadataResponse:
            metadata = self._entry(request.name, request.version).metadata()
            return json_format.ParseDict(metadata, pb.ModelMetadataResponse())

        return await self._call(context, respond, request)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
                          ) -> pb.ModelConfigResponse:
        async def respond() -> pb.ModelConfigResponse:
            config = self._entry(request.name, request.version).config(self._settings["max_delay_us"])
            return json_format.ParseDict({"config": config}, pb.ModelConfigResponse())

        return await self._call(context, respond, request)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest,
                              context: grpc.aio.ServicerContext) -> pb.ModelStatisticsResponse:
        async def respond() -> pb.ModelStatisticsResponse:
            entries = ([self._entry(request.name, request.version, need_ready=False)] if request.name
                       else list(self._entries.values()))
            stats = [entry.statistics.as_triton(entry.name, entry.version) for entry in entries]
            return json_format.ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())

        return await self._call(context, respond, request)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
                         ) -> pb.ModelInferResponse:
        received = time.perf_counter_ns()

        async def respond() -> pb.ModelInferResponse:
            entry = self._entry(request.model_name, request.model_version)
            async def parse() -> InferRequest:
                return parse_request(request)

            return await answer(entry, received, parse, lambda parsed, outputs: encode_response(entry, parsed, outputs))

        return await self._call(context, respond, request)


UNIMPLEMENTED = ("ModelStreamInfer", "RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload",
                 "SystemSharedMemoryStatus", "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister",
                 "CudaSharedMemoryStatus", "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister", "TraceSetting",
                 "LogSettings")  # the service's other methods: the generated base class would raise in each
for _method in UNIMPLEMENTED:
    setattr(InferenceService, _method, _unimplemented(_method))


@dataclasses.dataclass(frozen=True)
class Undecodable:
    """A request whose bytes are not the method's protobuf message: answered INVALID_ARGUMENT, as Triton does
    (grpc's own deserialization failure would be UNKNOWN)."""

    message: str  # the message type expected
    error: str


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parsed(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as err:
            return Undecodable(deserialize.__self__.__name__, str(err))  # type: ignore[attr-defined]

    return parsed


class _Handlers:
    """Stands in for the server while the generated `add_GRPCInferenceServiceServicer_to_server` registers the
    service, to take its method table."""

    def __init__(self) -> None:
        self.table: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same table arrives below

    def add_registered_method_handlers(self, service: str, table: dict[str, grpc.RpcMethodHandler]) -> None:
        self.table = table


def grpc_server(entries: dict[str, ModelEntry], settings: dict[str, Any], address: str,
                max_message_bytes: int) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server (not started) for `entries` on `address` ("host:port", port 0: any); and its port. Every
    method's request deserializer is tolerant (`Undecodable`); connections idle for the keep-alive time close: gRPC
    core sends GOAWAY between one and two `max_connection_idle_ms` after a connection's last call (measured 3.73 s
    for 2 s, 7.64 s for 4 s), so it is set to half the keep-alive time (closed after 2.13 s for 2 s, 3.95 s for 4 s:
    tests/test_serve_edges.py holds it to ≤ 1.25×)."""
    idle_ms = round(settings["keepalive_s"] * 1000 / 2)
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes),
                                      ("grpc.max_send_message_length", -1),
                                      ("grpc.max_connection_idle_ms", idle_ms)])
    captured = _Handlers()
    add_GRPCInferenceServiceServicer_to_server(InferenceService(entries, settings), captured)
    table = {name: handler._replace(request_deserializer=_tolerant(handler.request_deserializer))
             for name, handler in captured.table.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, table),))
    server.add_registered_method_handlers(SERVICE, table)
    port = server.add_insecure_port(address)
    if port == 0:
        raise UserError(f"cannot listen for gRPC on {address} (in use?); pick another {option('grpc_port')} or "
                        f"{option('no_grpc')}")
    return server, port
