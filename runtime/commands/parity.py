"""`onebyone parity REFERENCE CANDIDATE...`: the command line of parity (runtime/sessions/comparison.py holds it;
`onebyone.stages.parity` is the same from Python). Exit codes: 0 all pass, 1 a candidate fails, 2 a user error."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from onebyone.runtime.bundle.sources import SOURCES_HELP
from onebyone.runtime.commands.arguments import positive_int
from onebyone.runtime.core.errors import CheckFailed
from onebyone.runtime.sessions.opening import BACKENDS

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reference", help="zoo name, package.module:factory, bundle directory (its torch model) "
                                          "or an FP32 .onnx")
    parser.add_argument("candidates", nargs="+", help=".onnx, .plan or bundle directories")
    parser.add_argument("--data", help=f"{SOURCES_HELP}; plain `digits` is digits-test (default: the bundle's "
                                       "labelled data, else random)")
    parser.add_argument("--samples", type=positive_int, help="use at most this many samples")
    parser.add_argument("--json", type=Path, help="write every metric and layer as JSON")
    parser.add_argument("--report", type=Path, help="write a self-contained HTML report with plots")
    parser.add_argument("--max-rel", type=float, help="override max|diff|/max|ref| for every candidate")
    parser.add_argument("--min-cosine", type=float, help="override the cosine-similarity bound")
    parser.add_argument("--min-top1", type=float, help="override the top-1 agreement bound (0..1)")
    parser.add_argument("--no-layers", dest="layers", action="store_false", help="skip per-layer localisation")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="the engine that runs the candidates (default auto, as in `onebyone infer`)")
    parser.set_defaults(run=run)


def describe(record: dict[str, Any]) -> str:
    m = record["metrics"]
    verdict = "FAIL" if record["failures"] else "PASS"
    parts = [f"{record['artifact']}  {record['precision']}  {verdict}", f"max|diff|/max|ref| {m['max_rel']:.2e}",
             f"rel-L2 {m['rel_l2']:.2e}", f"cosine {m['cosine']:.6f}"]
    if m["top1_agreement"] is not None:
        parts.append(f"top-1 agree {m['top1_agreement']:.2%}  top-5 overlap {m['top5_overlap']:.2%}")
    if record.get("accuracy"):
        accuracy = record["accuracy"]
        low, high = accuracy["top1_interval"]
        parts.append(f"top-1 {accuracy['top1']:.2%} (95% {low:.1%}–{high:.1%}) top-5 {accuracy['top5']:.2%}, "
                     f"{accuracy['share_of_reference']:.2%} of the reference's {m['accuracy_reference']:.2%}")
    text = "  ".join(parts)
    kernel = record.get("kernel")
    if kernel:
        text += (f"\n    kernel check {'PASS' if kernel['ok'] else 'FAIL'}: rel-L2 {kernel['metrics']['rel_l2']:.2e} "
                 "from the file's exact Q/DQ math")
    if record["failures"]:
        text += "\n    out of bounds: " + "; ".join(record["failures"])
    layers = record.get("layers")
    if layers and layers["first_divergence"]:
        first = layers["first_divergence"]
        text += (f"\n    first layer above rel-L2 {layers['bound']:g}: {first['node']} ({first['op']}) "
                 f"rel-L2 {first['rel_l2']:.2e}")
    if layers and layers["largest_jump"]:
        jump = layers["largest_jump"]
        text += f"\n    largest jump: {jump['node']} ({jump['op']}) rel-L2 {jump['rel_l2']:.2e}"
    return text


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.sessions.comparison import ParityOptions
    from onebyone.stages import parity

    options = ParityOptions(data=args.data, samples=args.samples, json=args.json, report=args.report,
                            max_rel=args.max_rel, min_cosine=args.min_cosine, min_top1=args.min_top1,
                            layers=args.layers, backend=args.backend)
    result = parity(args.reference, args.candidates, options)
    stdout.print(f"reference: {result.reference}\ndata: {result.data}\ncpu: {result.cpu}")
    if result.reference_accuracy is not None:
        stdout.print(f"reference accuracy: {result.reference_accuracy.describe()}")
    for record in result.candidates:
        stdout.print(describe(record))
    if args.report is not None:
        stdout.print(f"report: {args.report}")
    if result.failed:
        raise CheckFailed(f"{', '.join(result.failed)} out of bounds (above)")
    return 0
