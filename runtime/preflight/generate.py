"""Write the parser tables (tables/tensorrt-<version>.json) from onnx-tensorrt's `docs/operators.md`, one per
TensorRT release, at the commit that release pins as `parsers/onnx`.

    python -m onebyone.runtime.preflight.generate SOURCES

SOURCES holds `<commit>/operators.md` for each commit below (e.g. `git show <commit>:docs/operators.md` in a clone of
onnx/onnx-tensorrt). tests/test_preflight_tables.py regenerates the tables from the same folder when it is there
(build/trt-sources) and compares. The tables are facts read from Apache-2.0 documentation, with their source."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from onebyone.runtime.core.files import atomic_write
from onebyone.runtime.preflight.operators import TABLES, parse_operators_md

PINS = {  # TensorRT release → onnx-tensorrt commit pinned as parsers/onnx on NVIDIA/TensorRT's release/<version> branch
    "10.0": "eb43908b02a296ea0594432f06e9d3fac288d672",
    "10.16": "6bde6596eca84abf9afe9b4d21c18c32800fd3ad",
    "11.1": "7c51a63a719180eb5160c874c111746f3fb46a6b",
}


def table_record(version: str, text: str) -> dict:
    """The JSON record of one release's table, from the text of its operators.md."""
    commit = PINS[version]
    source = {"repository": "onnx/onnx-tensorrt", "path": "docs/operators.md", "commit": commit,
              "pinned_by": f"NVIDIA/TensorRT release/{version} parsers/onnx", "license": "Apache-2.0",
              "sha256": hashlib.sha256(text.encode()).hexdigest()}
    return {"tensorrt": version, "source": source, **parse_operators_md(text)}


def table_text(record: dict) -> str:
    return json.dumps(record, indent=1) + "\n"


def main(sources: Path, out: Path = TABLES) -> None:
    for version, commit in PINS.items():
        record = table_record(version, (sources / commit / "operators.md").read_text())
        with atomic_write(out / f"tensorrt-{version}.json") as tmp:
            tmp.write_text(table_text(record))
        print(f"TensorRT {version}: {len(record['operators'])} operators, opsets {record['opsets']}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
