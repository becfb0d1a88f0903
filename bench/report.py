"""Merge the parts `make bench` wrote (`bench/<part>.json` + `bench/<part>.md`) into `bench/results.json` and
`bench/README.md`.

    python -m bench.report bench
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onebyone.runtime.core.files import atomic_write

MERGED = "results.json"


def part_arguments(doc: str, build: str = "build/bench") -> argparse.ArgumentParser:
    """The arguments every `make bench` part takes: --build (its working folder) and --out (where its results go);
    the description is the first paragraph of the part's docstring."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--build", type=Path, default=Path(build))
    parser.add_argument("--out", type=Path, default=Path("bench"))
    return parser


def write_part(folder: Path, part: str, record: dict, markdown: str) -> None:
    """One `make bench` part's results: `<part>.json` (the record) and `<part>.md` (its table), each atomically."""
    with atomic_write(folder / f"{part}.json") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    with atomic_write(folder / f"{part}.md") as tmp:
        tmp.write_text(markdown)


def merge(folder: Path) -> None:
    parts = sorted(p for p in folder.glob("*.json") if p.name != MERGED)
    record = {"parts": {p.stem: json.loads(p.read_text()) for p in parts}}
    with atomic_write(folder / MERGED) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    sections = [p.with_suffix(".md").read_text() for p in parts if p.with_suffix(".md").is_file()]
    machines = {f"{part['machine']['processor']} ({part['machine']['cpus']} CPUs)"
                for part in record["parts"].values()}
    where = (f"on {machines.pop()}" if len(machines) == 1
             else "part by part (a part rerun alone is measured where it ran); each section names its CPU")
    with atomic_write(folder / "README.md") as tmp:
        tmp.write_text(f"# Benchmarks\n\nMade by `make bench` {where}, ONNX Runtime CPU execution provider "
                       "(OpenVINO's CPU plugin where a section says so). Every "
                       "ratio is measured side by side in one run.\n\n" + "\n".join(sections))


if __name__ == "__main__":
    merge(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("bench"))
