"""The thin server: KServe v2 over HTTP with dynamic batching (`onebyone serve`), and Triton model repositories for
scale-out (`onebyone triton-repo`)."""

KEEPALIVE_S = 75.0  # a connection (HTTP or gRPC) idle this long is closed (aiohttp's web.run_app default)
SHUTDOWN_SECONDS = 30.0  # from SIGTERM to exit: in-flight requests answered, models closed
