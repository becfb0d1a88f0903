"""TensorRT's parser tables are data generated from onnx-tensorrt's published operators.md (runtime/preflight/
generate.py), and every Restrictions sentence in them is a check (runtime/preflight/restrictions.py)."""

from __future__ import annotations

import pytest

from onebyone.runtime.preflight.generate import PINS, table_record, table_text
from onebyone.runtime.preflight.operators import KNOWN, TABLES, parse_operators_md, table
from onebyone.runtime.preflight.restrictions import check_for
from tests.helpers import REPO

SOURCES = REPO / "build" / "trt-sources"  # <commit>/operators.md, e.g. `git show <commit>:docs/operators.md`


def test_every_known_release_has_its_pinned_table():
    assert set(PINS) == set(KNOWN)
    for version in KNOWN:
        parsed = table(version)
        assert parsed.source["commit"] == PINS[version] and parsed.source["license"] == "Apache-2.0"
        assert parsed.operators["Conv"].supported and not parsed.operators["QLinearConv"].supported
    assert table("10.0").opsets == (9, 20) and table("10.16").opsets == table("11.1").opsets == (9, 24)


def test_every_restriction_sentence_of_every_table_is_a_check():
    unchecked = [(version, name, sentence) for version in KNOWN for name, op in table(version).operators.items()
                 if op.supported for sentence in op.restrictions if check_for(sentence) is None]
    assert unchecked == []
    assert check_for("`frobnicate` must be purple") is None, "an unknown sentence is not passed as checked"


def test_the_parser_reads_the_tables_stray_cells():
    text = """TensorRT 9.9 supports operators in the inclusive range of opset 9 to opset 17.
TensorRT supports the following ONNX data types: FLOAT32, INT64, and BOOL

## Operator Support Matrix

| Operator | Supported | Supported Types | Restrictions |
|----------|-----------|-----------------|--------------|
| Cast     | Y         | FP32, INT64, , UINT8, BOOL |     |
| Split    | Y         | FP32, INT64 BOOL |
| TopK     | Y         | FP32 | `sorted` must be 1. `K` input must be less than 3840.
| Resize   | Y         | FP32 | Supported resize modes: `nearest`.<br />Antialiasing is not supported.|
| DFT      | N          |
| DynamicQuantizeLinear | N | Not supported. Compose it.
"""
    parsed = parse_operators_md(text)
    assert parsed["opsets"] == [9, 17] and parsed["types"] == ["FLOAT32", "INT64", "BOOL"]
    ops = parsed["operators"]
    assert ops["Cast"] == {"supported": True, "types": ["FP32", "INT64", "UINT8", "BOOL"], "restrictions": []}
    assert ops["Split"]["types"] == ["FP32", "INT64", "BOOL"]
    assert ops["TopK"]["restrictions"] == ["`sorted` must be 1", "`K` input must be less than 3840"]
    assert ops["Resize"]["restrictions"] == ["Supported resize modes: `nearest`", "Antialiasing is not supported"]
    assert ops["DFT"] == {"supported": False, "types": [], "restrictions": []}
    assert ops["DynamicQuantizeLinear"]["restrictions"] == ["Not supported", "Compose it"]


@pytest.mark.skipif(not SOURCES.is_dir(), reason=f"no operators.md sources under {SOURCES} (see generate.py)")
def test_the_committed_tables_are_what_the_generator_makes_of_the_sources():
    for version, commit in PINS.items():
        source = SOURCES / commit / "operators.md"
        committed = (TABLES / f"tensorrt-{version}.json").read_text()
        assert table_text(table_record(version, source.read_text())) == committed, version
