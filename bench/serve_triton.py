"""`onebyone serve` beside a real tritonserver (2.51, Python backend, bench/tritonserver.py) on the same model, the
same machine and the same clients, in one run:

    python -m bench.serve_triton --build build/bench --out bench

The model is digits_resnet's INT8 `ort` file (the model itself costs well under a millisecond, so the servers'
own costs decide). Triton serves the repository `onebyone triton-repo --backend python --instance-kind cpu` writes
(the artifact run by onebyone inside Triton's Python backend); both servers batch dynamically with a 2 ms delay and
up to 16 samples. 16 tritonclient threads send batch-1 requests over each transport for `--seconds`; every process
shares every CPU. Writes bench/serve-triton.{json,md}.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import part_arguments, write_part
from bench.serve import MAX_DELAY_MS, TOP, TRANSPORTS, ServerProcess, drive, free_port
from bench.tritonserver import TritonServer
from onebyone import stages
from onebyone.runtime.commands.main import main as cli
from onebyone.runtime.core.progress import progress
from onebyone.runtime.core.timing import machine

MODEL = "digits_resnet.int8-ort"


def artifact(build: Path) -> Path:
    """digits_resnet exported and quantized (INT8 `ort`) under `build`."""
    bundle = stages.export("digits_resnet", output=build / "digits_resnet").bundle
    return stages.quantize(bundle / "model.onnx", precision="int8", calib="digits-calibration", flavour="ort").output


def measure(target: Path, work: Path, seconds: float, advance: Any) -> list[dict[str, Any]]:
    sample = np.zeros((1, 1, 8, 8), np.float32)
    rows = []
    with ServerProcess(target, True, MAX_DELAY_MS, os.sched_getaffinity(0), "onnxruntime") as server:
        for transport in TRANSPORTS:
            rows.append({"server": "onebyone serve", "transport": transport,
                         **drive(transport, server.urls, MODEL, sample, TOP, seconds)})
            advance()
    repository = work / "repository"
    assert cli(["triton-repo", str(target), "-o", str(repository), "--backend", "python", "--max-batch", str(TOP),
                "--max-delay-ms", str(MAX_DELAY_MS), "--python-engine", "onnxruntime"]) == 0
    with TritonServer([repository], work, (free_port(), free_port(), free_port())) as triton:
        urls = {"http": triton.http, "grpc": triton.grpc}
        for transport in TRANSPORTS:
            rows.append({"server": "tritonserver 2.51, Python backend", "transport": transport,
                         **drive(transport, urls, MODEL, sample, TOP, seconds)})
            advance()
    return rows


def markdown(record: dict[str, Any]) -> str:
    lines = ["## onebyone serve beside tritonserver (`bench/serve_triton.py`)", "",
             f"CPU: {record['machine']['processor']}. Model {MODEL}, {TOP} tritonclient threads of batch-1 requests, "
             f"dynamic batching ({MAX_DELAY_MS:g} ms, up to {TOP}) on both, every process on every CPU.", "",
             "| server | transport | requests | requests/s | p50 ms | p90 ms | mean batch run |",
             "|---|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['server']} | {r['transport']} | {r['requests']} | {r['samples_per_s']:.0f} | {r['p50_ms']:.2f} | "
              f"{r['p90_ms']:.2f} | {r['mean_batch']:.1f} |" for r in record["rows"]]
    lines.append("")
    lines += [f"- {transport}: onebyone serve / tritonserver = {ratio:.2f} in requests/s"
              for transport, ratio in record["ratios"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = part_arguments(__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    work = args.build / "serve-triton"
    work.mkdir(parents=True, exist_ok=True)
    with progress() as bar:
        task = bar.add_task("serve vs tritonserver", total=2 * len(TRANSPORTS))
        rows = measure(artifact(args.build), work.resolve(), args.seconds, lambda: bar.advance(task))
    by = {(r["server"].split()[0], r["transport"]): r["samples_per_s"] for r in rows}
    ratios = {t: by[("onebyone", t)] / by[("tritonserver", t)] for t in TRANSPORTS}
    record = {"machine": machine(), "model": MODEL, "seconds": args.seconds, "rows": rows, "ratios": ratios}
    args.out.mkdir(parents=True, exist_ok=True)
    write_part(args.out, "serve-triton", record, markdown(record))
    print(markdown(record))


if __name__ == "__main__":
    main()
