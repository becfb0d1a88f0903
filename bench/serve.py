"""The thin server beside the in-process session, measured with the real tritonclient over HTTP and gRPC, one run:

    python -m bench.serve --build build/bench --out bench

- latency at batch 1, concurrency 1 (digits_resnet, where the model itself costs well under a millisecond, so the
  difference is the server's overhead): in-process `Session.run` vs the server with and without dynamic batching,
  over each transport;
- throughput at concurrency 1 and 16, batch-1 requests (ResNet-50 INT8 `ort`, the CPU deployment artifact, on
  ONNX Runtime whatever `auto` would pick on this CPU class), with and without dynamic batching, over each
  transport, beside the in-process session running batches of 8 and 16;
- the same at concurrency 16 for `serve --backend openvino` with the INT8 `trt` file (the GPU's file on CPUs),
  beside its in-process OpenVINO session at batch 16 (shared layout).

Each server is an `onebyone serve` process on loopback ports; the clients are tritonclient threads in a second
process, and the in-process session runs in a third. Two layouts (ResNet-50 is measured in both):
- `shared`: every process may use every CPU, so the clients take CPU time from the server they measure;
- `pinned`: the clients on the first CPU, the server and the in-process reference on the others, so the ratio
  compares the server with the session on the same cores (on another machine, clients would not share them).
Writes bench/serve.json and bench/serve.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import part_arguments
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.progress import progress
from onebyone.runtime.core.timing import machine
from onebyone.runtime.sessions.opening import open as open_session

CONCURRENCY = (1, 16)
MAX_DELAY_MS = 2.0
TRANSPORTS = ("http", "grpc")
TOP = max(CONCURRENCY)
RESNET = "resnet50 INT8 ort"
OPENVINO = "resnet50 INT8 trt, --backend openvino"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def layouts() -> dict[str, dict[str, set[int]]]:
    """CPU sets per layout: `clients` and `server` (which also holds the in-process reference)."""
    cpus = sorted(os.sched_getaffinity(0))
    found = {"shared": {"clients": set(cpus), "server": set(cpus)}}
    if len(cpus) >= 2:
        found["pinned"] = {"clients": {cpus[0]}, "server": set(cpus[1:])}
    return found


def pinned_process(cpus: set[int]) -> ProcessPoolExecutor:
    """A fresh interpreter confined to `cpus` before it imports anything (so ORT sizes its threads by them)."""
    return ProcessPoolExecutor(1, mp_context=get_context("spawn"), initializer=os.sched_setaffinity,
                               initargs=(0, cpus))


class ServerProcess:
    """`onebyone serve TARGET` (HTTP and gRPC) in a subprocess on `cpus`, ready when `/v2/health/ready` answers."""

    def __init__(self, target: Path, batching: bool, max_delay_ms: float, cpus: set[int], backend: str) -> None:
        self.urls = {"http": f"127.0.0.1:{free_port()}", "grpc": f"127.0.0.1:{free_port()}"}
        command = [sys.executable, "-m", "onebyone", "serve", str(target), "--port", self.urls["http"].split(":")[1],
                   "--grpc-port", self.urls["grpc"].split(":")[1], "--max-batch", str(TOP),
                   "--max-delay-ms", str(max_delay_ms), "--backend", backend, *([] if batching else ["--no-batching"])]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                         preexec_fn=lambda: os.sched_setaffinity(0, cpus))

    def __enter__(self) -> ServerProcess:
        import tritonclient.http as triton

        client = triton.InferenceServerClient(self.urls["http"])
        for _ in range(600):
            if self._process.poll() is not None:
                raise RuntimeError(f"the server exited: {self._process.stderr.read().decode()[-2000:]}")
            try:
                if client.is_server_ready():
                    return self
            except Exception:  # not listening yet
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready in 60 s")

    def __exit__(self, *exc: object) -> None:
        self._process.terminate()
        self._process.wait(timeout=60)


def drive(transport: str, urls: dict[str, str], model: str, sample: np.ndarray, concurrency: int,
          seconds: float) -> dict[str, float]:
    """`concurrency` tritonclient threads of `transport` send batch-1 requests (binary/raw tensors) for `seconds`;
    the mean batch the server ran comes from its statistics."""
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    triton = {"http": triton_http, "grpc": triton_grpc}[transport]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)
    deadline = [0.0]
    failures: list[BaseException] = []

    def client(index: int) -> None:
        try:
            connection = triton.InferenceServerClient(urls[transport])
            tensor = triton.InferInput("input", list(sample.shape), "FP32")
            tensor.set_data_from_numpy(sample)
            connection.infer(model, [tensor])  # warm the connection
            ready.wait()
            while time.perf_counter() < deadline[0]:
                began = time.perf_counter()
                connection.infer(model, [tensor])
                latencies[index].append((time.perf_counter() - began) * 1000)
        except BaseException as err:  # a failed request ends the measurement, not hangs it
            failures.append(err)
            ready.abort()

    monitor = triton_http.InferenceServerClient(urls["http"])

    def counts() -> tuple[int, int]:
        (stats,) = monitor.get_inference_statistics(model)["model_stats"]
        return stats["inference_count"], stats["execution_count"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    while ready.n_waiting < concurrency and not ready.broken:  # every client has sent its warm-up request
        time.sleep(0.01)
    before = counts()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client failed: raised below
        ready.wait()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError(f"a {transport} client failed: {failures[0]}")
    elapsed = time.perf_counter() - began
    flat = [value for values in latencies for value in values]
    samples, executions = (after - first for after, first in zip(counts(), before, strict=True))
    return {"requests": len(flat), "samples_per_s": len(flat) * len(sample) / elapsed,
            "p50_ms": float(np.median(flat)), "p90_ms": float(np.percentile(flat, 90)),
            "mean_batch": samples / max(executions, 1)}


def in_process(target: Path, batch: int, seconds: float, backend: str) -> dict[str, float]:
    """The session itself, `batch` samples per run, for `seconds`."""
    with open_session(target, backend) as session:
        x = np.resize(np.random.default_rng(0).standard_normal(session.inputs[0].shape[1:]).astype(np.float32),
                      (batch, *session.inputs[0].shape[1:]))
        session.run(x)
        latencies = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(latencies) < 5:
            began = time.perf_counter()
            session.run(x)
            latencies.append((time.perf_counter() - began) * 1000)
    median = float(np.median(latencies))
    return {"requests": len(latencies), "samples_per_s": batch * 1000 / median, "p50_ms": median,
            "p90_ms": float(np.percentile(latencies, 90)), "mean_batch": batch}


def measure(name: str, target: Path, model: str, layout: str, cpus: dict[str, set[int]],
            concurrencies: tuple[int, ...], in_process_batches: tuple[int, ...], seconds: float,
            advance: Any, backend: str) -> list[dict[str, Any]]:
    with open_session(target, backend) as session:
        sample = np.resize(np.random.default_rng(0).standard_normal(session.inputs[0].shape[1:]),
                           (1, *session.inputs[0].shape[1:])).astype(np.float32)
    base = {"model": name, "layout": layout, "backend": backend}
    rows = []
    with pinned_process(cpus["server"]) as reference:
        for batch in in_process_batches:
            rows.append({**base, "how": f"in-process Session.run, batch {batch}", "transport": "-",
                         "concurrency": 1, **reference.submit(in_process, target, batch, seconds, backend).result()})
            advance()
    with pinned_process(cpus["clients"]) as clients:
        for batching in (False, True):
            how = f"server, {f'dynamic batching, {MAX_DELAY_MS:g} ms delay' if batching else 'no batching'}"
            with ServerProcess(target, batching, MAX_DELAY_MS, cpus["server"], backend) as server:
                for transport in TRANSPORTS:
                    for concurrency in concurrencies:
                        result = clients.submit(drive, transport, server.urls, model, sample, concurrency, seconds)
                        rows.append({**base, "how": how, "transport": transport, "concurrency": concurrency,
                                     **result.result()})
                        advance()
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Overhead per transport (digits, batch 1) and, per layout and transport, the server at 16 clients over the
    in-process session at batch 16 on the same CPUs."""
    def row(model: str, layout: str, how: str, transport: str, concurrency: int) -> dict[str, Any]:
        return next(r for r in rows if r["model"] == model and r["layout"] == layout and r["how"].startswith(how)
                    and r["transport"] == transport and r["concurrency"] == concurrency)

    base = row("digits_resnet", "shared", "in-process", "-", 1)["p50_ms"]
    summary: dict[str, Any] = {
        "overhead_ms": {t: row("digits_resnet", "shared", "server, no", t, 1)["p50_ms"] - base for t in TRANSPORTS},
        "overhead_batching_ms": {t: row("digits_resnet", "shared", "server, dynamic", t, 1)["p50_ms"] - base
                                 for t in TRANSPORTS},
        "resnet50": {}}
    for layout in sorted({r["layout"] for r in rows if r["model"] == RESNET}):
        reference = row(RESNET, layout, f"in-process Session.run, batch {TOP}", "-", 1)["samples_per_s"]
        summary["resnet50"][layout] = {t: {
            "batched_vs_in_process": row(RESNET, layout, "server, dynamic", t, TOP)["samples_per_s"] / reference,
            "unbatched_vs_in_process": row(RESNET, layout, "server, no", t, TOP)["samples_per_s"] / reference,
            "batched_mean_batch": row(RESNET, layout, "server, dynamic", t, TOP)["mean_batch"]} for t in TRANSPORTS}
    reference = row(OPENVINO, "shared", f"in-process Session.run, batch {TOP}", "-", 1)["samples_per_s"]
    summary["openvino"] = {t: {"batched_vs_in_process": row(OPENVINO, "shared", "server, dynamic", t, TOP)
                               ["samples_per_s"] / reference} for t in TRANSPORTS}
    return summary


def markdown(record: dict[str, Any]) -> str:
    """bench/serve.md from the bench/serve.json record."""
    rows, summary = record["rows"], record["summary"]
    placement = "; ".join(f"`{name}`: clients on CPUs {sets['clients']}, server and in-process on {sets['server']}"
                          for name, sets in record["layouts"].items())
    lines = ["## Thin server (`bench/serve.py`, tritonclient over loopback HTTP and gRPC)", "",
             f"CPU: {record['machine']['processor']}. Layouts: {placement}.", "",
             "| model | layout | how | transport | concurrency | requests | samples/s | p50 ms | p90 ms | mean batch "
             "run |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['layout']} | {r['how']} | {r['transport']} | {r['concurrency']} | {r['requests']} "
              f"| {r['samples_per_s']:.1f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['mean_batch']:.1f} |"
              for r in rows]
    lines.append("")
    for transport in TRANSPORTS:
        lines.append(f"- {transport}: p50 overhead at batch 1 (digits_resnet, no batching) "
                     f"{summary['overhead_ms'][transport]:.2f} ms; with dynamic batching ({MAX_DELAY_MS:g} ms delay) "
                     f"{summary['overhead_batching_ms'][transport]:.2f} ms")
    for layout, transports in summary["resnet50"].items():
        for transport, ratios in transports.items():
            lines.append(f"- ResNet-50 INT8, `{layout}`, {transport}, {TOP} clients: batched server / in-process "
                         f"batch {TOP} = {ratios['batched_vs_in_process']:.2f} (runs averaged "
                         f"{ratios['batched_mean_batch']:.1f} samples); unbatched = "
                         f"{ratios['unbatched_vs_in_process']:.2f}")
    for transport, ratios in summary["openvino"].items():
        lines.append(f"- ResNet-50 INT8 `trt` on `--backend openvino`, {transport}, {TOP} clients: batched server / "
                     f"in-process batch {TOP} = {ratios['batched_vs_in_process']:.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = part_arguments(__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    cpus = layouts()
    server_rows = 2 * len(TRANSPORTS)
    total = 1 + server_rows + len(cpus) * (2 + server_rows * len(CONCURRENCY)) + 1 + server_rows
    with progress() as bar:
        task = bar.add_task("serve bench", total=total)

        def advance() -> None:
            bar.advance(task)

        rows = measure("digits_resnet", args.build / "digits_resnet", "digits_resnet", "shared", cpus["shared"],
                       (1,), (1,), args.seconds, advance, backend="onnxruntime")
        for layout, sets in cpus.items():
            rows += measure(RESNET, args.build / "resnet50" / "model.int8-ort.onnx", "resnet50.int8-ort", layout,
                            sets, CONCURRENCY, (8, TOP), args.seconds, advance, backend="onnxruntime")
        rows += measure(OPENVINO, args.build / "resnet50" / "model.int8-trt.onnx", "resnet50.int8-trt", "shared",
                        cpus["shared"], (TOP,), (TOP,), args.seconds, advance, backend="openvino")
    summary = summarize(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "layouts": {name: {k: sorted(v) for k, v in sets.items()}
                                                for name, sets in cpus.items()}, "rows": rows, "summary": summary}
    with atomic_write(args.out / "serve.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    with atomic_write(args.out / "serve.md") as tmp:
        tmp.write_text(markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
