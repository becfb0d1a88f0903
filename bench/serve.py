"""The thin server beside the in-process session, measured with the real tritonclient, one run:

    python -m bench.serve --build build/bench --out bench

- latency at batch 1, concurrency 1 (digits_resnet, where the model itself costs well under a millisecond, so the
  difference is the server's overhead): in-process `Session.run` vs the server with and without dynamic batching;
- throughput at concurrency 1 and 16, batch-1 requests (ResNet-50 INT8 `ort`, the CPU deployment artifact), with
  and without dynamic batching, beside the in-process session running batches of 16.

Each server is a separate `onebyone serve` process on a loopback port, so the clients (threads in this process)
do not share its interpreter. Writes bench/serve.json and bench/serve.md.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.progress import progress
from onebyone.runtime.core.timing import machine
from onebyone.runtime.sessions.opening import open as open_session

CONCURRENCY = (1, 16)
MAX_DELAY_MS = 2.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServerProcess:
    """`onebyone serve TARGET` in a subprocess, ready when `/v2/health/ready` answers."""

    def __init__(self, target: Path, batching: bool, max_batch: int, max_delay_ms: float) -> None:
        self.url = f"127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "onebyone", "serve", str(target), "--port", self.url.split(":")[1],
                   "--max-batch", str(max_batch), "--max-delay-ms", str(max_delay_ms), "--no-grpc"]
        self._process = subprocess.Popen([*command, *([] if batching else ["--no-batching"])],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def __enter__(self) -> ServerProcess:
        import tritonclient.http as triton

        client = triton.InferenceServerClient(self.url)
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


def drive(url: str, model: str, sample: np.ndarray, concurrency: int, seconds: float) -> dict[str, float]:
    """`concurrency` tritonclient threads send batch-1 requests (binary tensors) for `seconds`."""
    import tritonclient.http as triton

    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def client(index: int) -> None:
        connection = triton.InferenceServerClient(url)
        tensor = triton.InferInput("input", list(sample.shape), "FP32")
        tensor.set_data_from_numpy(sample)
        connection.infer(model, [tensor])  # warm the connection
        start.wait()
        while time.perf_counter() < deadline[0]:
            began = time.perf_counter()
            connection.infer(model, [tensor])
            latencies[index].append((time.perf_counter() - began) * 1000)

    monitor = triton.InferenceServerClient(url)

    def counts() -> tuple[int, int]:
        (stats,) = monitor.get_inference_statistics(model)["model_stats"]
        return stats["inference_count"], stats["execution_count"]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + seconds + 1.0  # the warm-up requests go first
    while sum(1 for t in threads if t.is_alive()) and start.n_waiting < concurrency:
        time.sleep(0.01)
    before = counts()
    deadline[0] = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    flat = [value for values in latencies for value in values]
    samples, executions = (after - first for after, first in zip(counts(), before, strict=True))
    return {"requests": len(flat), "samples_per_s": len(flat) * len(sample) / elapsed,
            "p50_ms": float(np.median(flat)), "p90_ms": float(np.percentile(flat, 90)),
            "mean_batch": samples / max(executions, 1)}


def in_process(target: Path, batch: int, seconds: float) -> dict[str, float]:
    """The session itself, `batch` samples per run, for `seconds`."""
    with open_session(target) as session:
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
            "p90_ms": float(np.percentile(latencies, 90))}


def measure(name: str, target: Path, model: str, concurrencies: tuple[int, ...], seconds: float,
            in_process_batches: tuple[int, ...], max_delay_ms: float) -> list[dict[str, Any]]:
    with open_session(target) as session:
        sample = np.resize(np.random.default_rng(0).standard_normal(session.inputs[0].shape[1:]),
                           (1, *session.inputs[0].shape[1:])).astype(np.float32)
    rows = [{"model": name, "how": f"in-process Session.run, batch {batch}", "concurrency": 1,
             **in_process(target, batch, seconds), "mean_batch": batch} for batch in in_process_batches]
    for batching in (False, True):
        with ServerProcess(target, batching, max(CONCURRENCY), max_delay_ms) as server:
            for concurrency in concurrencies:
                how = f"server, {f'dynamic batching, {max_delay_ms:g} ms delay' if batching else 'no batching'}"
                rows.append({"model": name, "how": how, "concurrency": concurrency,
                             **drive(server.url, model, sample, concurrency, seconds)})
    return rows


def markdown(rows: list[dict[str, Any]], summary: dict[str, float]) -> str:
    lines = ["## Thin server (`bench/serve.py`, tritonclient over loopback HTTP)", "",
             "| model | how | concurrency | requests | samples/s | p50 ms | p90 ms | mean batch run |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['how']} | {r['concurrency']} | {r['requests']} | {r['samples_per_s']:.1f} | "
              f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['mean_batch']:.1f} |" for r in rows]
    lines += ["", f"- p50 overhead at batch 1 (digits_resnet, no batching): {summary['overhead_ms']:.2f} ms; "
                  f"with dynamic batching ({MAX_DELAY_MS:g} ms delay): {summary['overhead_batching_ms']:.2f} ms",
              f"- ResNet-50 INT8 at concurrency {max(CONCURRENCY)}: batched server / in-process batch "
              f"{max(CONCURRENCY)} = {summary['batched_vs_in_process']:.2f} (the server's runs averaged "
              f"{summary['batched_mean_batch']:.1f} samples); unbatched server / in-process batch {max(CONCURRENCY)} "
              f"= {summary['unbatched_vs_in_process']:.2f}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--delay-ms", type=float, default=MAX_DELAY_MS, help="ResNet-50 server's --max-delay-ms")
    args = parser.parse_args()
    with progress() as bar:
        task = bar.add_task("serve bench", total=2)
        digits = measure("digits_resnet", args.build / "digits_resnet", "digits_resnet", (1,), args.seconds, (1,),
                         MAX_DELAY_MS)
        bar.advance(task)
        resnet = measure("resnet50 INT8 ort", args.build / "resnet50" / "model.int8-ort.onnx", "resnet50.int8-ort",
                         CONCURRENCY, args.seconds, (8, max(CONCURRENCY)), args.delay_ms)
        bar.advance(task)
    rows = digits + resnet

    def row(model: str, how: str, concurrency: int) -> dict[str, Any]:
        return next(r for r in rows if r["model"] == model and r["how"].startswith(how)
                    and r["concurrency"] == concurrency)

    base = row("digits_resnet", "in-process", 1)["p50_ms"]
    top = max(CONCURRENCY)
    reference = row("resnet50 INT8 ort", f"in-process Session.run, batch {top}", 1)["samples_per_s"]
    summary = {"overhead_ms": row("digits_resnet", "server, no batching", 1)["p50_ms"] - base,
               "overhead_batching_ms": row("digits_resnet", "server, dynamic", 1)["p50_ms"] - base,
               "batched_vs_in_process": row("resnet50 INT8 ort", "server, dynamic", top)["samples_per_s"] / reference,
               "unbatched_vs_in_process": row("resnet50 INT8 ort", "server, no", top)["samples_per_s"] / reference,
               "batched_mean_batch": row("resnet50 INT8 ort", "server, dynamic", top)["mean_batch"]}
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "serve.json") as tmp:
        tmp.write_text(json.dumps({"machine": machine(), "rows": rows, "summary": summary}, indent=2) + "\n")
    with atomic_write(args.out / "serve.md") as tmp:
        tmp.write_text(markdown(rows, summary))
    print(markdown(rows, summary))


if __name__ == "__main__":
    main()
