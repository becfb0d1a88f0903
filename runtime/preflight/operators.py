"""TensorRT's ONNX operator tables, one per release: which operators the parser imports, for which types, with which
restrictions, and the opset range. Read from `tables/tensorrt-<version>.json`, which `generate.py` writes from
onnx-tensorrt's `docs/operators.md` at the commit NVIDIA/TensorRT's `release/<version>` branch pins as
`parsers/onnx` (Apache-2.0, recorded in each table)."""

from __future__ import annotations

import dataclasses
import json
import re
from functools import cache
from pathlib import Path

TABLES = Path(__file__).resolve().parent / "tables"
KNOWN = ("10.0", "10.16", "11.1")  # every release with a table, oldest first
DEFAULT = ("10.16", "11.1")  # the newest 10.x and 11.x: what the pipeline lints for

_OPSETS = re.compile(r"inclusive range of opset (\d+) to opset (\d+)")
_TYPES = re.compile(r"following ONNX data types: (.+)")
_SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z`])")


@dataclasses.dataclass(frozen=True)
class Operator:
    supported: bool
    types: tuple[str, ...]  # as the table names them: FP32, FP16, BF16, FP8, FP4, INT4, INT8, INT32, INT64, UINT8, BOOL
    restrictions: tuple[str, ...]  # the Restrictions cell, one sentence each (restrictions.py makes them checks)


@dataclasses.dataclass(frozen=True)
class ParserTable:
    tensorrt: str
    source: dict[str, str]  # repository, path, commit, pinned_by, license, sha256 of the text it was read from
    opsets: tuple[int, int]
    operators: dict[str, Operator]

    @property
    def cited(self) -> str:
        """Where the table's rules come from, in one phrase."""
        source = self.source
        return f"{source['repository']} {source['path']} @ {source['commit'][:12]} (TensorRT {self.tensorrt})"


def sentences(cell: str) -> tuple[str, ...]:
    """A Restrictions cell as sentences, without their final period: split at `<br />` and after a period."""
    parts = [part for chunk in cell.split("<br />") for part in _SENTENCE_END.split(chunk.strip())]
    return tuple(" ".join(part.split()).rstrip(".").strip() for part in parts if part.strip(" .|"))


def parse_operators_md(text: str) -> dict:
    """The table's facts from the text of an operators.md: the opset range, the data types, and per operator
    whether it is supported, for which types, with which restrictions. Tolerates the table's stray cells (`INT64, ,
    UINT8`, `INT64 BOOL`, a missing closing `|`)."""
    opsets = _OPSETS.search(text)
    types = _TYPES.search(text)
    if opsets is None or types is None:
        raise ValueError("not an onnx-tensorrt operators.md: no opset range or data type line")
    operators = {}
    rows = text.split("## Operator Support Matrix", 1)[-1].splitlines()
    for row in rows:
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) < 2 or cells[1] not in ("Y", "N"):
            continue
        supported = cells[1] == "Y"
        operators[cells[0]] = {  # an unsupported operator's cells are a note (how to do without it), if any
            "supported": supported,
            "types": [t for t in re.split(r"[,\s]+", cells[2]) if t] if supported and len(cells) > 2 else [],
            "restrictions": list(sentences(" ".join(cells[3:] if supported else cells[2:])))}
    if cells_missing := [name for name, op in operators.items() if op["supported"] and not op["types"]]:
        raise ValueError(f"supported operators without types: {cells_missing}")
    return {"opsets": [int(opsets[1]), int(opsets[2])],
            "types": [t.strip() for t in re.split(r",|\band\b", types[1]) if t.strip()],
            "operators": dict(sorted(operators.items()))}


def tables_for(installed: str | None) -> tuple[str, ...]:
    """The releases to lint for before building with TensorRT `installed` (its version): the newest known release of
    its major version not newer than it (10.3 → 10.0, 10.18 → 10.16, 11.4 → 11.1); DEFAULT when none is installed or
    its major version has no table."""
    if installed is None:
        return DEFAULT
    wanted = tuple(int(part) for part in installed.split(".")[:2] if part.isdigit())
    same_major = [known for known in KNOWN if known.split(".")[0] == str(wanted[0]) and
                  tuple(map(int, known.split("."))) <= wanted]
    return (same_major[-1],) if same_major else DEFAULT


@cache
def table(version: str) -> ParserTable:
    """The parser table of TensorRT `version` (one of KNOWN)."""
    record = json.loads((TABLES / f"tensorrt-{version}.json").read_text())
    operators = {name: Operator(op["supported"], tuple(op["types"]), tuple(op["restrictions"]))
                 for name, op in record["operators"].items()}
    return ParserTable(record["tensorrt"], record["source"], tuple(record["opsets"]), operators)
