"""The KServe v2 HTTP server (aiohttp): health, server and model metadata, Triton-style config and statistics, and
inference with JSON or binary tensors. Every error is `{"error": "..."}` with Triton's status codes: 400 bad request,
404 unknown model or route, 413 body over the limit, 503 not ready, 500 internal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from onebyone.runtime.bundle.tensors import batchable, prepare_inputs, select_outputs
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.version import __version__
from onebyone.runtime.serve.models import ModelEntry, make_runner, model_name
from onebyone.runtime.serve.protocol import HEADER_LENGTH, ProtocolError, encode_infer_response, parse_infer_request
from onebyone.runtime.sessions.opening import open as open_session

log = logging.getLogger("onebyone.serve")
EXTENSIONS = ["binary_tensor_data", "model_configuration", "statistics"]
ENTRIES = web.AppKey("entries", dict)
SETTINGS = web.AppKey("settings", dict)


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(body, separators=(",", ":")), status=status,
                        content_type="application/json")


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except (ProtocolError, UserError) as err:
        return _json({"error": str(err)}, 400)
    except HTTPError as err:
        return _json({"error": str(err)}, err.status)
    except web.HTTPException as err:  # unknown route (404), wrong method (405), body over the limit (413), ...
        return _json({"error": err.text or err.reason}, err.status)
    except Exception as err:
        log.exception("internal error on %s", request.path)
        return _json({"error": f"internal error: {type(err).__name__}: {err}"}, 500)


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
    _entry(request)
    return _json({"ready": True})


async def model_config(request: web.Request) -> web.Response:
    return _json(_entry(request).config(request.app[SETTINGS]["max_delay_us"]))


def _statistics(entry: ModelEntry) -> dict[str, Any]:
    stats = entry.runner.stats if entry.runner is not None else None
    return {"name": entry.name, "version": entry.version,
            "inference_count": stats.inference_count if stats else 0,
            "execution_count": stats.execution_count if stats else 0,
            "request_count": stats.request_count if stats else 0,
            "batch_stats": [{"batch_size": size, "compute_infer": {"count": count}}
                            for size, count in sorted(stats.batch_sizes.items())] if stats else []}


async def model_statistics(request: web.Request) -> web.Response:
    if "model" in request.match_info:
        return _json({"model_stats": [_statistics(_entry(request, need_ready=False))]})
    return _json({"model_stats": [_statistics(e) for e in request.app[ENTRIES].values()]})


async def infer(request: web.Request) -> web.Response:
    entry = _entry(request)
    session = entry.session
    parsed = parse_infer_request(await request.read(), request.headers.get(HEADER_LENGTH))
    for name, array in parsed.inputs.items():
        expected = next((spec for spec in session.inputs if spec.name == name), None)
        if expected is not None and array.dtype != expected.dtype:
            raise HTTPError(400, f"input {name!r} is {array.dtype.name}; the model takes {expected.dtype.name}")
    inputs = prepare_inputs(session.inputs, parsed.inputs, session.batch_range)
    if parsed.outputs is not None:
        select_outputs(session.outputs, list(parsed.outputs))
    samples = len(next(iter(inputs.values())))
    if entry.max_batch_size and samples > entry.max_batch_size:
        raise HTTPError(400, f"batch {samples} exceeds the model's max_batch_size {entry.max_batch_size}")
    outputs = await entry.runner.infer(inputs)
    body, header_length = encode_infer_response(entry.name, entry.version, parsed, outputs)
    if header_length is None:
        return web.Response(body=body, content_type="application/json")
    return web.Response(body=body, content_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(header_length)})


async def _close_models(app: web.Application) -> None:
    """After the last in-flight request: finish queued batches, then release the sessions."""
    for entry in app[ENTRIES].values():
        if entry.runner is not None:
            await entry.runner.close()
        if entry.session is not None:
            entry.session.close()


def create_app(entries: dict[str, ModelEntry], max_request_bytes: int, max_delay_us: int | None) -> web.Application:
    app = web.Application(client_max_size=max_request_bytes, middlewares=[json_errors])
    app[ENTRIES] = entries
    app[SETTINGS] = {"max_delay_us": max_delay_us}
    model = "/v2/models/{model}"
    versioned = "/v2/models/{model}/versions/{version}"
    app.router.add_get("/v2", server_metadata)
    app.router.add_get("/v2/health/live", live)
    app.router.add_get("/v2/health/ready", server_ready)
    app.router.add_get("/v2/models/stats", model_statistics)
    for prefix in (model, versioned):
        app.router.add_get(prefix, model_metadata)
        app.router.add_get(f"{prefix}/ready", model_ready)
        app.router.add_get(f"{prefix}/config", model_config)
        app.router.add_get(f"{prefix}/stats", model_statistics)
        app.router.add_post(f"{prefix}/infer", infer)
    app.on_cleanup.append(_close_models)
    return app


def load_models(targets: Sequence[str | Path], backend: str, providers: Sequence[str] | None, max_batch: int,
                max_delay: float | None) -> dict[str, ModelEntry]:
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
        entries[name] = ModelEntry(name, session, make_runner(session, max_batch, max_delay), size)
    return entries


class BackgroundServer:
    """Serve an app on a thread with its own event loop (tests, benchmarks): `with BackgroundServer(app) as s:`
    then `s.url` is `127.0.0.1:PORT`. Leaving the block shuts down gracefully."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app, self._host, self._port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="onebyone-serve", daemon=True)
        self.url = ""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = web.AppRunner(self._app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self._host, self._port)
        self._loop.run_until_complete(site.start())
        host, port = self._runner.addresses[0][:2]
        self.url = f"{host}:{port}"
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        self._started.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
