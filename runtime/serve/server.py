"""The KServe v2 HTTP server (aiohttp): health, server and model metadata, Triton-style config and statistics, and
inference with JSON or binary tensors. Every error is `{"error": "..."}` with Triton's status codes: 400 bad request,
404 unknown model or route, 405 wrong method (with `Allow`), 413 body over the limit (also before the body, for
`Expect: 100-continue`), 503 not ready, 500 internal — including the errors aiohttp's HTTP parser finds. A client
that goes away mid-request is logged at debug, not as an error. Responses are gzipped for clients that accept it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from onebyone.runtime.bundle.tensors import batchable
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.version import __version__
from onebyone.runtime.serve import KEEPALIVE_S
from onebyone.runtime.serve.batcher import QueueFull
from onebyone.runtime.serve.encodings import decoded
from onebyone.runtime.serve.inference import TimedOut, answer
from onebyone.runtime.serve.metrics import exposition
from onebyone.runtime.serve.models import ModelEntry, make_runner, model_name
from onebyone.runtime.serve.protocol import (
    EXTENSIONS,
    HEADER_LENGTH,
    InferRequest,
    ProtocolError,
    encode_infer_response,
    header_length_of,
    parse_infer_request,
)
from onebyone.runtime.serve.statistics import ModelStatistics
from onebyone.runtime.sessions.opening import open as open_session

log = logging.getLogger("onebyone.serve")
access = logging.getLogger("onebyone.serve.access")  # one JSON line per HTTP request, at INFO
ENTRIES = web.AppKey("entries", dict)
JSON_WORKERS = web.AppKey("json_workers", list)
CLOSE_SECONDS = 3.0  # of the shutdown bound, kept for closing the models after the drain
JSON_ON_LOOP_BYTES = 1 << 20  # JSON headers up to this size are parsed on the event loop (a few ms)
SETTINGS = web.AppKey("settings", dict)


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")), status=status, headers=headers,
                        content_type="application/json")


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error as `{"error": ...}` with its status, gzip where accepted, and one access-log line per request."""
    started = time.perf_counter()
    try:
        response = await handler(request)
    except (ProtocolError, UserError) as err:
        response = _json({"error": str(err)}, 400)
    except HTTPError as err:
        response = _json({"error": str(err)}, err.status)
    except (QueueFull, TimedOut) as err:
        response = _json({"error": str(err)}, 503, {"Retry-After": "1"})
    except web.HTTPException as err:  # unknown route (404), wrong method (405), body over the limit (413), ...
        allow = {"Allow": err.headers["Allow"]} if "Allow" in err.headers else None
        response = _json({"error": err.text or err.reason}, err.status, allow)
    except ConnectionError as err:  # the client reset or closed the connection mid-request: nobody to answer
        log.debug("client went away during %s: %s", request.path, err)
        raise
    except Exception as err:
        log.exception("internal error on %s", request.path)
        response = _json({"error": f"internal error: {type(err).__name__}: {err}"}, 500)
    if isinstance(response, web.Response) and "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression()
    if access.isEnabledFor(logging.INFO):
        access.info(json.dumps({"remote": request.remote, "method": request.method, "path": request.path,
                                "status": response.status, "ms": round((time.perf_counter() - started) * 1e3, 3),
                                "bytes_in": request.content_length or 0,
                                "bytes_out": response.content_length if isinstance(response, web.Response)
                                else None}))
    return response


def _declared_too_large(request: web.Request) -> web.Response | None:
    """The 413 for a request whose `Content-Length` is over the limit, answered before its body is read (the
    connection then closes: the unread body is not drained); None when it declares no more than the limit."""
    limit = request.app[SETTINGS]["max_request_bytes"]
    if request.content_length is None or request.content_length <= limit:
        return None
    response = _json({"error": f"the body is {request.content_length} bytes; this server takes at most {limit}"}, 413)
    response.force_close()
    return response


async def _refuse_oversized_bodies(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue`: a body over the limit is refused (413) before the client sends it."""
    if request.headers.get("Expect", "").lower() == "100-continue":
        if (refused := _declared_too_large(request)) is not None:
            return refused
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
    return None


class _JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler, answering what its HTTP parser rejects (a header too large, a bad
    Content-Length, ...) as `{"error": ...}` JSON like every other error (the client's mistakes log at debug), and
    still reading connections once shutdown starts: aiohttp stops reading a connection the moment it closes, so a
    body still arriving was never answered and held the drain to its full timeout."""

    def data_received(self, data: bytes) -> None:
        # Not only while a request is in progress: its headers may have arrived and be queued for the handler while
        # the body is still coming, and dropping those bytes held the drain for its whole timeout.
        if (self._close or self._force_close) and self.transport is not None:
            closing, forcing = self._close, self._force_close
            self._close = self._force_close = False
            try:
                super().data_received(data)
            finally:
                self._close, self._force_close = closing or self._close, forcing or self._force_close
            return
        super().data_received(data)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500 and not isinstance(exc, ConnectionError):  # a client that went away is not our error
            self.log_exception("Error handling request", exc_info=exc)
        else:
            log.debug("HTTP request from %s failed: %s", request.remote, message or exc)
        if request.writer.output_size > 0:
            raise ConnectionError("the response is already being sent; the connection is closed instead")
        response = _json({"error": message or HTTPStatus(status).phrase}, status)
        response.force_close()
        return response


class _JsonErrorServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorHandler(self, loop=self._loop, **self._kwargs)


class ServerRunner(web.AppRunner):
    """An AppRunner whose connections answer HTTP-level errors as JSON (`_JsonErrorHandler`), close after the app's
    keep-alive time idle, and hand request bodies over as sent (the infer route decompresses them, bounded, off the
    event loop: runtime/serve/encodings.py)."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, keepalive_timeout=app[SETTINGS]["keepalive_s"], auto_decompress=False, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorServer  # aiohttp builds the Server inside the app; only its handler differs
        return server


def serve_forever(app: web.Application, host: str, port: int, grpc_port: int | None, shutdown_seconds: float,
                  announce: Callable[[str], None]) -> None:
    """Serve HTTP (and gRPC unless `grpc_port` is None) until SIGINT or SIGTERM, then stop accepting, drain
    in-flight requests and close the models, all within `shutdown_seconds` (the last CLOSE_SECONDS of them kept for
    closing the models)."""
    drain = max(shutdown_seconds - CLOSE_SECONDS, shutdown_seconds / 2)

    async def main() -> None:
        runner = ServerRunner(app, access_log=None, shutdown_timeout=drain)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        grpc = grpc_for(app, f"{host}:{grpc_port}") if grpc_port is not None else None
        if grpc is not None:
            await grpc[0].start()
        announce(f"serving on http://{host}:{port}" + (f" and grpc://{host}:{grpc[1]}" if grpc else "")
                 + " (Ctrl+C or SIGTERM stops, draining requests in flight)")
        stop = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, stop.set)
        try:
            await stop.wait()
        finally:  # both transports stop accepting and drain at once; closing the models gets what remains
            deadline = asyncio.get_running_loop().time() + shutdown_seconds
            await asyncio.gather(runner.cleanup(), *([grpc[0].stop(drain)] if grpc else []))
            try:
                await asyncio.wait_for(close_models(app), max(deadline - asyncio.get_running_loop().time(), 0.1))
            except TimeoutError:
                log.warning("the models did not close within the %g s shutdown bound; exiting", shutdown_seconds)

    asyncio.run(main())


def grpc_for(app: web.Application, address: str) -> tuple[Any, int]:
    """A gRPC server (not started) for the app's models on `address`, and its port."""
    from onebyone.runtime.serve.grpc_service import grpc_server

    return grpc_server(app[ENTRIES], app[SETTINGS], address, app[SETTINGS]["max_request_bytes"])


def _entry(request: web.Request, need_ready: bool = True) -> ModelEntry:
    entries: dict[str, ModelEntry] = request.app[ENTRIES]
    name = request.match_info["model"]
    entry = entries.get(name)
    if entry is None:
        raise HTTPError(404, f"unknown model {name!r}; this server has {', '.join(entries) or 'no models'}")
    version = request.match_info.get("version")
    if version is not None and version != entry.version:
        raise HTTPError(404, f"model {name!r} has no version {version!r}; it has {entry.version!r}")
    if need_ready and not entry.ready:
        raise HTTPError(503, f"model {name!r} is not ready: {entry.error}")
    return entry


async def server_metadata(request: web.Request) -> web.Response:
    return _json({"name": "onebyone", "version": __version__, "extensions": EXTENSIONS})


async def live(request: web.Request) -> web.Response:
    return _json({"live": True})


async def server_ready(request: web.Request) -> web.Response:
    failing = [e.name for e in request.app[ENTRIES].values() if not e.ready]
    if failing:
        raise HTTPError(503, f"model(s) not ready: {', '.join(failing)}")
    return _json({"ready": True})


async def model_metadata(request: web.Request) -> web.Response:
    return _json(_entry(request).metadata())


async def model_ready(request: web.Request) -> web.Response:
    entry = _entry(request)
    return _json({"name": entry.name, "ready": True})


async def model_config(request: web.Request) -> web.Response:
    return _json(_entry(request).config(request.app[SETTINGS]["max_delay_us"]))


async def model_statistics(request: web.Request) -> web.Response:
    """Triton's statistics extension: `{"model_stats": [ModelStatistics, ...]}`."""
    entries = ([_entry(request, need_ready=False)] if "model" in request.match_info
               else list(request.app[ENTRIES].values()))
    return _json({"model_stats": [e.statistics.as_triton(e.name, e.version) for e in entries]})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, Triton's metric names (runtime/serve/metrics.py)."""
    body, content_type = exposition(request.app[ENTRIES].values())
    return web.Response(body=body, headers={"Content-Type": content_type})


def _json_parser(app: web.Application) -> concurrent.futures.ProcessPoolExecutor:
    """The app's one worker process, made on its first large JSON request (close_models shuts it down); spawned,
    not forked, since the server process holds threads (ORT's, the runners')."""
    workers = app[JSON_WORKERS]
    if not workers:
        workers.append(concurrent.futures.ProcessPoolExecutor(1, multiprocessing.get_context("spawn")))
    return workers[0]


async def _parsed(app: web.Application, body: bytes, header: list[str]) -> InferRequest:
    """The request, parsed on the event loop when its JSON is small; otherwise in a worker process: json.loads holds
    the GIL for the whole document, which would stall every other request and the health probes (a thread would
    not help; tests/test_serve_edges.py measures the probes during a 60 MB request)."""
    header_length = header_length_of(header)
    json_bytes = header_length if header_length is not None else len(body)
    if json_bytes <= JSON_ON_LOOP_BYTES:
        return parse_infer_request(body, header_length)
    return await asyncio.get_running_loop().run_in_executor(_json_parser(app), parse_infer_request, body,
                                                            header_length)


async def infer(request: web.Request) -> web.Response:
    entry = _entry(request)
    if (refused := _declared_too_large(request)) is not None:
        return refused
    body = await request.read()
    received = time.perf_counter_ns()  # Triton's compute_input starts once the request has arrived whole
    body = await decoded(body, request.headers.get("Content-Encoding", ""), request.app[SETTINGS]["max_request_bytes"])
    content, header_length = await answer(
        entry, received, lambda: _parsed(request.app, body, request.headers.getall(HEADER_LENGTH, [])),
        lambda parsed, outputs: encode_infer_response(entry.name, entry.version, parsed, outputs,
                                                                 entry.labels))
    if header_length is None:
        return web.Response(body=content, content_type="application/json")
    return web.Response(body=content, content_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(header_length)})


async def close_models(app: web.Application) -> None:
    """After the last in-flight request (HTTP and gRPC): finish queued batches, then release the sessions and the
    JSON worker."""
    for workers in app[JSON_WORKERS]:
        workers.shutdown(wait=True)
    for entry in app[ENTRIES].values():
        if entry.runner is not None:
            await entry.runner.close()
        if entry.session is not None:
            entry.session.close()


def create_app(entries: dict[str, ModelEntry], max_request_bytes: int, max_delay_us: int | None,
               keepalive_s: float = KEEPALIVE_S) -> web.Application:
    """The app serving `entries`: bodies (decompressed) up to `max_request_bytes`, the batching delay its configs
    report, and connections (HTTP and gRPC) closed after `keepalive_s` idle."""
    app = web.Application(client_max_size=max_request_bytes, middlewares=[json_errors])
    app[ENTRIES] = entries
    app[JSON_WORKERS] = []
    app[SETTINGS] = {"max_delay_us": max_delay_us, "max_request_bytes": max_request_bytes, "keepalive_s": keepalive_s}
    model = "/v2/models/{model}"
    versioned = "/v2/models/{model}/versions/{version}"
    app.router.add_get("/v2", server_metadata)
    app.router.add_get("/v2/health/live", live)
    app.router.add_get("/v2/health/ready", server_ready)
    app.router.add_get("/v2/models/stats", model_statistics)
    app.router.add_get("/metrics", metrics)
    for prefix in (model, versioned):
        app.router.add_get(prefix, model_metadata)
        app.router.add_get(f"{prefix}/ready", model_ready)
        app.router.add_get(f"{prefix}/config", model_config)
        app.router.add_get(f"{prefix}/stats", model_statistics)
        app.router.add_post(f"{prefix}/infer", infer, expect_handler=_refuse_oversized_bodies)
    return app


def load_models(targets: Sequence[str | Path], backend: str, providers: Sequence[str] | None, max_batch: int,
                max_delay: float | None, max_queue: int | None = None) -> dict[str, ModelEntry]:
    """Open every target as a self-checked session. A model that fails its self-check is kept, not ready, with the
    reason; any other problem (a bad path, an unreadable file) is a UserError."""
    from onebyone.runtime.sessions.locate import locate
    from onebyone.runtime.sessions.self_check import SelfCheckFailed

    entries: dict[str, ModelEntry] = {}
    for target in targets:
        name = model_name(locate(target, backend))
        if name in entries:
            raise UserError(f"two models are named {name!r}; serve each bundle or artifact once")
        try:
            session = open_session(target, backend, providers=providers)
        except SelfCheckFailed as err:
            entries[name] = ModelEntry(name, None, None, 0, error=str(err))
            continue
        size = max_batch if batchable(session.inputs) else 0
        statistics = ModelStatistics()
        runner = make_runner(session, statistics, max_batch, max_delay, max_queue)
        entries[name] = ModelEntry(name, session, runner, size, statistics=statistics)
    return entries
