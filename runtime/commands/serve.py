"""`onebyone serve BUNDLE_OR_ARTIFACT... [--host] [--port] [--grpc-port] [--max-batch] [--max-delay-ms]`: KServe v2 over
HTTP and gRPC (Triton's protocol and extensions)."""

from __future__ import annotations

import argparse
import logging

from rich.console import Console

from onebyone.runtime.commands.arguments import (
    add_batching_options,
    add_session_options,
    max_delay_us,
    positive_float,
    positive_int,
)
from onebyone.runtime.serve import KEEPALIVE_S, SHUTDOWN_SECONDS

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="+", help="bundle directories, .onnx/.plan files or zoo names")
    parser.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001,
                        help="gRPC port: Triton's GRPCInferenceService (default 8001)")
    parser.add_argument("--no-grpc", action="store_true", help="serve HTTP only")
    add_batching_options(parser)
    parser.add_argument("--max-request-mb", type=positive_int, default=64,
                        help="request body limit, after decompression (default 64)")
    parser.add_argument("--keepalive-s", type=positive_float, default=KEEPALIVE_S,
                        help=f"close a connection (HTTP or gRPC) idle this long (default {KEEPALIVE_S:g})")
    parser.add_argument("--max-queue", type=positive_int, default=256,
                        help="requests a model holds waiting or running; more are refused with 503 / UNAVAILABLE "
                             "and a retry hint (default 256)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning",
                        help="info adds one JSON access-log line per HTTP request (default warning)")
    add_session_options(parser, self_check_flag=False)  # models always self-check; failing ones are not ready
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.serve.server import create_app, load_models, serve_forever

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    delay_us = max_delay_us(args)
    max_delay = None if delay_us is None else delay_us / 1e6
    entries = load_models(args.targets, args.backend, args.providers, args.max_batch, max_delay, args.max_queue)
    for entry in entries.values():
        state = "ready" if entry.ready else f"NOT READY: {entry.error}"
        detail = f"{entry.session.describe()}, max_batch_size {entry.max_batch_size}" if entry.session else ""
        stdout.print(f"model {entry.name!r}: {state}{'  ' + detail if detail else ''}")
    app = create_app(entries, args.max_request_mb << 20, delay_us, args.keepalive_s)
    serve_forever(app, args.host, args.port, None if args.no_grpc else args.grpc_port, SHUTDOWN_SECONDS, stdout.print)
    return 0
