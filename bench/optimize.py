"""`make bench`, graph-pass part: ONNX Runtime CPU throughput of the raw export against `onebyone optimize`'s
targets, side by side in one run, each as a ratio to the raw export at ORT_ENABLE_ALL (what a user gets without
onebyone). Writes `bench/optimize.json` and `bench/optimize.md` (`python -m bench.report` merges
the parts).

    python -m bench.optimize --models resnet50,resnet50_v1,inception_block --batches 1,8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.table import Table

from onebyone.runtime.commands.arguments import positive_int
from onebyone.runtime.commands.main import main as onebyone_main
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.core.ort_session import ort_session
from onebyone.runtime.core.timing import Timing, machine, time_interleaved


@dataclasses.dataclass(frozen=True)
class Variant:
    """One candidate: an artifact made by `optimize` with these arguments (none: the raw export), run at `level`."""

    label: str
    optimize_args: tuple[str, ...] | None
    level: str


ORT_PASSES = "cleanup,fold_batchnorm,fold_affine,merge_conv_chain,cleanup,fuse_conv_activation"
VARIANTS = (
    Variant("raw export", None, "all"),
    Variant("--target generic", ("--target", "generic"), "all"),
    Variant("--target ort", ("--target", "ort"), "all"),
    Variant("merge_siblings alone", ("--passes", "cleanup,merge_siblings,cleanup"), "all"),
    Variant("--target ort + gemm_as_conv", ("--passes", f"{ORT_PASSES},gemm_as_conv"), "all"),
    Variant("raw export", None, "basic"),
    Variant("--target ort", ("--target", "ort"), "basic"),
)
BASELINE = VARIANTS[0]

stdout = Console(highlight=False)


def artifact(bundle: Path, variant: Variant) -> Path:
    """The variant's ONNX file in `bundle`, made afresh by the CLI (so it reflects the passes as they are now)."""
    source = bundle / "model.onnx"
    if variant.optimize_args is None:
        return source
    path = bundle / f"model.{re.sub(r'[^a-z0-9_+]+', '-', variant.label.lower()).strip('-')}.onnx"
    if onebyone_main(["optimize", str(source), "-o", str(path), *variant.optimize_args]) != 0:
        raise UserError(f"`onebyone optimize` failed for {variant.label}")
    return path


def bench_model(model: str, build: Path, batches: list[int], seconds: float) -> list[dict]:
    bundle = build / model
    if not (bundle / "model.onnx").is_file() and onebyone_main(["export", model, "-o", str(bundle)]) != 0:
        raise UserError(f"`onebyone export {model}` failed")
    paths = {variant.label: artifact(bundle, variant) for variant in VARIANTS}
    sessions = {variant: ort_session(paths[variant.label], variant.level) for variant in VARIANTS}
    first = next(iter(sessions.values())).get_inputs()[0]
    rows = []
    for batch in batches:
        shape = [batch if not isinstance(d, int) else d for d in first.shape]
        feed = {first.name: np.random.default_rng(batch).standard_normal(shape).astype(np.float32)}
        outputs = {variant: s.run(None, feed)[0] for variant, s in sessions.items()}
        one_run = _probe_seconds(sessions[BASELINE], feed)
        rounds = max(5, int(seconds / (one_run * len(sessions))))
        timings = time_interleaved({v.label + v.level: _runner(s, feed) for v, s in sessions.items()}, batch,
                                   rounds, label=model)
        baseline: Timing = timings[BASELINE.label + BASELINE.level]
        for variant in VARIANTS:
            timing = timings[variant.label + variant.level]
            reference = outputs[BASELINE]
            error = float(np.abs(outputs[variant] - reference).max() / np.abs(reference).max())
            rows.append({"model": model, "variant": variant.label, "ort_level": variant.level,
                         "optimize_args": list(variant.optimize_args or []), **timing.as_record(),
                         "vs_raw_all": timing.speedup_over(baseline), "max_rel_diff_vs_raw": error})
    return rows


def _runner(s: ort.InferenceSession, feed: dict[str, np.ndarray]):
    return lambda: s.run(None, feed)


def _probe_seconds(s: ort.InferenceSession, feed: dict[str, np.ndarray]) -> float:
    started = time.perf_counter()
    s.run(None, feed)
    return time.perf_counter() - started


def markdown(record: dict) -> str:
    """bench/optimize.md from the bench/optimize.json record."""
    return ("## Graph passes (`bench/optimize.py`)\n\nCPU: " + record["machine"]["processor"] + ". × raw is the "
            "throughput ratio to the raw export at ORT_ENABLE_ALL: the median over rounds of the two latencies "
            f"measured back to back in the same round.\n\n{table_markdown(record['rows'])}\n")


def table_markdown(rows: list[dict]) -> str:
    lines = ["| model | batch | artifact | ORT level | median ms | p90 ms | samples/s | × raw (ALL) |",
             "|---|---:|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['batch']} | {r['variant']} | {r['ort_level']} | {r['median_ms']:.2f} | "
              f"{r['p90_ms']:.2f} | {r['throughput']:.1f} | {r['vs_raw_all']:.3f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.optimize", description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="resnet50,resnet50_v1,inception_block")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--seconds", type=float, default=40.0, help="time budget per model and batch size")
    parser.add_argument("--build", type=Path, default=Path("build/bench"))
    parser.add_argument("--out", type=Path, default=Path("bench"))
    args = parser.parse_args(argv)
    batches = [positive_int(b) for b in args.batches.split(",")]
    rows = [row for model in args.models.split(",") for row in bench_model(model, args.build, batches, args.seconds)]
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"machine": machine(), "onnxruntime": ort.__version__, "baseline": "raw export at ORT_ENABLE_ALL",
              "rows": rows}
    with atomic_write(args.out / "optimize.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    with atomic_write(args.out / "optimize.md") as tmp:
        tmp.write_text(markdown(record))
    table = Table("model", "batch", "artifact", "ORT level", "median ms", "samples/s", "× raw (ALL)")
    for r in rows:
        table.add_row(r["model"], str(r["batch"]), r["variant"], r["ort_level"], f"{r['median_ms']:.2f}",
                      f"{r['throughput']:.1f}", f"{r['vs_raw_all']:.3f}")
    stdout.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
