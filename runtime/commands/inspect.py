"""`onebyone inspect PLAN [--json]`: what TensorRT made of the network — per layer, its type, the precisions of its
inputs and outputs, and the tactic (TensorRT's IEngineInspector; `onebyone build` records detailed layer
information). The check that INT8 layers really run in INT8. Needs the GPU the plan was built for."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from onebyone.runtime.bundle.plan import profile_text, profiles_record, read_plan_info, where_it_runs
from onebyone.runtime.core.errors import UserError

stdout = Console(highlight=False, soft_wrap=True)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", type=Path, help="a TensorRT plan (.plan, from `onebyone build`)")
    parser.add_argument("--json", action="store_true", help="print the layers as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from onebyone.runtime.sessions.opening import open as open_session

    if args.plan.suffix != ".plan":
        raise UserError(f"{args.plan} is not a TensorRT plan (.plan); make one with `onebyone build`")
    info = read_plan_info(args.plan)
    if not args.json:
        stdout.print(f"built with TensorRT {info.tensorrt} on {info.gpu} (compute {info.compute_capability}); runs "
                     f"with {where_it_runs(info)}")
    with open_session(args.plan, backend="tensorrt", self_check=False) as session:
        layers = session.layers()
        device = session.device
        profiles = session.profiles()
    if args.json:
        print(json.dumps({"plan": str(args.plan), "device": device, "runs_on": where_it_runs(info),
                          "profiles": profiles_record(profiles),
                          "layers": layers}, indent=2))
        return 0
    for index, profile in enumerate(profiles):
        stdout.print(f"optimization profile {index}: {profile_text(profile)}")
    table = Table("layer", "type", "inputs", "outputs", "tactic", title=f"{args.plan} on {device}")
    for layer in layers:
        table.add_row(layer["name"], layer["type"], " ".join(layer["inputs"]), " ".join(layer["outputs"]),
                      str(layer["tactic"] or ""))
    stdout.print(table)
    counts = Counter(layer["outputs"][0] if layer["outputs"] else "?" for layer in layers)
    stdout.print(f"{len(layers)} layers; by output precision: "
                 + ", ".join(f"{name} {count}" for name, count in counts.most_common()))
    return 0
