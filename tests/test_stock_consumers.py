"""The golden check in the consumers' configurations (runtime/parity/check.py): every stock ONNX Runtime level and,
where OpenVINO is installed, OpenVINO's defaults — a consumer that computes something else fails the check by name,
a consumer that is not binding is shown and recorded only, and OpenVINO's default bf16 on BF16 CPUs widens the bound
to the bf16 row, never narrows an INT8 file's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
from onnx import helper

from onebyone.runtime.bundle.golden import Golden, reference_session, run_session
from onebyone.runtime.bundle.tolerances import TOLERANCES
from onebyone.runtime.core.cpu import Cpu
from onebyone.runtime.parity.check import STOCK_ONNXRUNTIME, Engine, check_artifact
from tests.graphs import model, tensor_input


def conv_file(folder: Path, rng: np.random.Generator) -> tuple[Path, Golden]:
    """A 3x3 Conv + Relu file and its golden samples (ONNX Runtime's outputs, as written)."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = model(nodes, [tensor_input("x", ["N", 3, 8, 8])], ["y"],
                  {"w": rng.normal(0, 0.3, (4, 3, 3, 3)), "b": rng.normal(0, 1, 4)})
    path = folder / "conv.onnx"
    ir.save(graph, path)
    inputs = {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}
    return path, Golden(inputs, run_session(reference_session(path), inputs))


def scaled(factor: float, tolerance=None, binding: bool = True) -> Engine:
    """A consumer whose outputs are the file's times `factor`."""
    def open_file(path: Path):
        session = reference_session(path)
        return lambda feeds: {k: v * factor for k, v in run_session(session, feeds).items()}

    return Engine("scaled", open_file, f"a consumer scaling by {factor}", tolerance, binding)


def test_every_stock_level_is_checked_and_recorded(tmp_path, rng):
    path, golden = conv_file(tmp_path, rng)
    check = check_artifact(path, golden, TOLERANCES["fp32"])
    assert check.ok and list(check.consumers) == [c.name for c in STOCK_ONNXRUNTIME]
    assert list(check.as_record()["stock"]) == ["onnxruntime basic", "onnxruntime extended", "onnxruntime all"]


def test_a_consumer_that_computes_something_else_fails_the_check_by_name(tmp_path, rng):
    path, golden = conv_file(tmp_path, rng)
    check = check_artifact(path, golden, TOLERANCES["fp32"], consumers=(scaled(1.01),))
    assert check.parity.ok and not check.ok
    assert "a consumer scaling by 1.01 computes something else: FAIL" in check.describe()
    assert not check.as_record()["stock"]["scaled"]["ok"]


def test_a_consumer_that_is_not_binding_is_shown_and_recorded_but_not_counted(tmp_path, rng):
    """OpenVINO on an INT8 file: the kernel check decides whether it may run the file."""
    path, golden = conv_file(tmp_path, rng)
    check = check_artifact(path, golden, TOLERANCES["fp32"], consumers=(scaled(1.01, binding=False),))
    assert check.ok and "note: a consumer scaling by 1.01 computes something else: FAIL" in check.describe()
    assert not check.as_record()["stock"]["scaled"]["ok"]


@pytest.mark.parametrize(("precision", "factor", "ok"), [
    ("fp32", 1.05, True),  # inside the bf16 row (0.08): OpenVINO's default on a BF16 CPU
    ("fp32", 1.10, False),  # outside it
    ("int8", 1.20, True),  # an INT8 file keeps its own, wider row (0.25)
])
def test_a_consumers_least_bound_widens_and_never_narrows(tmp_path, rng, precision, factor, ok):
    path, golden = conv_file(tmp_path, rng)
    check = check_artifact(path, golden, TOLERANCES[precision], consumers=(scaled(factor, TOLERANCES["bf16"]),))
    assert check.consumers["scaled"].ok is ok


@pytest.mark.parametrize(("features", "default"), [({"avx2", "avx512_bf16"}, "bf16"), ({"avx2", "amx_bf16"}, "bf16"),
                                                   ({"avx2", "avx512_vnni"}, "f32"), ({"avx2"}, "f32")])
def test_stock_openvino_is_held_to_bf16_where_that_is_its_default(tmp_path, rng, features, default):
    pytest.importorskip("openvino")
    from onebyone.runtime.sessions.openvino_backend import stock_openvino

    consumer = stock_openvino(Cpu("injected", "x86_64", frozenset(features)))
    assert f"{default} on this CPU" in consumer.description
    assert consumer.tolerance == (TOLERANCES["bf16"] if default == "bf16" else None)
    path, golden = conv_file(tmp_path, rng)
    check = check_artifact(path, golden, TOLERANCES["fp32"], consumers=(consumer,))
    assert check.consumers["openvino defaults"].ok, check.describe()
