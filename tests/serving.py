"""A server in the test process: the app of `onebyone serve` (HTTP and gRPC) on a thread of its own."""

from __future__ import annotations

import asyncio
import threading

import pytest
from aiohttp import web

from onebyone.runtime.serve.server import ServerRunner, close_models, grpc_for


class BackgroundServer:
    """Serve an app on a thread with its own event loop: `with BackgroundServer(app) as s:`
    then `s.url` is `127.0.0.1:PORT` (HTTP) and `s.grpc_url` the gRPC endpoint. Leaving the block shuts down
    gracefully."""

    def __init__(self, app: web.Application, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app, self._host, self._port = app, host, port
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="onebyone-serve", daemon=True)
        self.url = self.grpc_url = ""

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._runner = ServerRunner(self._app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self._host, self._port)
        self._loop.run_until_complete(site.start())
        host, port = self._runner.addresses[0][:2]
        self.url = f"{host}:{port}"
        grpc, grpc_port = grpc_for(self._app, f"{self._host}:0")
        self._loop.run_until_complete(grpc.start())
        self.grpc_url = f"{self._host}:{grpc_port}"
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(asyncio.gather(self._runner.cleanup(), grpc.stop(5)))
        self._loop.run_until_complete(close_models(self._app))
        pending = asyncio.all_tasks(self._loop)  # handlers of kept-alive connections: cancelled, not abandoned
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        self._started.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()


def tritonserver_or_skip() -> None:
    """Skip the calling test, with the reason, where the real tritonserver (bench/tritonserver.py) cannot run or
    cannot be fetched; fetch it into the cache otherwise."""
    from bench.tritonserver import FetchFailed, home, unsupported_here

    if (reason := unsupported_here()) is not None:
        pytest.skip(reason)
    try:
        home()
    except FetchFailed as err:
        pytest.skip(f"no tritonserver: {err}")
