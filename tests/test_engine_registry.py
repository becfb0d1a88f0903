"""A third-party engine registered through the `onebyone.engines` entry point, as an installed package would: it is
listed by `onebyone infer --help`, picked by `auto` for its own file format, run by `open()` and served — with no
module of onebyone changed. The package (a module and its dist-info) is written to a temporary folder put on
sys.path, which is all `importlib.metadata` needs to find it."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

import onebyone
from onebyone.runtime.core.errors import OnebyoneWarning, UserError
from onebyone.runtime.serve.server import create_app, load_models
from onebyone.runtime.sessions import engines
from tests.serving import BackgroundServer

FAKE_ENGINE = '''
"""A fake engine: a .fakemodel file is an .npz holding `weight` (out, in) and `bias` (out); it computes x W^T + b."""
import numpy as np

from onebyone import Engine, ModelDescription, Session, TensorSpec

ENGINE = Engine(name="fake", opens="fakemodel", suffixes=(".fakemodel",), devices=("cpu",), kinds=("fp32",),
                platform="fake_platform", triton_backend=None, session="fake_engine:FakeSession")


class FakeSession(Session):
    backend = "fake"

    def __init__(self, target, options):
        with np.load(target.path) as data:
            self._weight, self._bias = data["weight"], data["bias"]
        out, width = self._weight.shape
        super().__init__(target, [TensorSpec("x", np.dtype(np.float32), (-1, width))],
                         [TensorSpec("y", np.dtype(np.float32), (-1, out))],
                         ModelDescription(target.path.stem, "unknown", None, "fp32"), "numpy")

    def _run(self, feeds, output_names):
        return {"y": (feeds["x"] @ self._weight.T + self._bias).astype(np.float32)}

    def close(self):
        pass
'''
BROKEN_ENGINE = 'ENGINE = "not an engine"\n'


@pytest.fixture
def install(tmp_path, monkeypatch):
    """install(entry_points) puts a package declaring them on sys.path (with both modules), the registry's caches
    cleared around it; returns its folder."""

    def installed(entry_points: str) -> Path:
        (tmp_path / "fake_engine.py").write_text(FAKE_ENGINE)
        (tmp_path / "broken_engine.py").write_text(BROKEN_ENGINE)
        info = tmp_path / "fake_engine-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-engine\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[onebyone.engines]\n{entry_points}\n")
        monkeypatch.syspath_prepend(str(tmp_path))
        return tmp_path

    engines._registered.cache_clear()
    engines.engine.cache_clear()
    yield installed
    engines._registered.cache_clear()
    engines.engine.cache_clear()
    for module in ("fake_engine", "broken_engine"):
        sys.modules.pop(module, None)


@pytest.fixture
def fake_package(install):
    return install("fake = fake_engine:ENGINE")


@pytest.fixture
def fake_model(fake_package, rng):
    """A .fakemodel file and its weights."""
    weight = rng.normal(size=(3, 5)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    path = fake_package / "tiny.fakemodel"
    with path.open("wb") as stream:
        np.savez(stream, weight=weight, bias=bias)
    return path, weight, bias


def test_the_cli_lists_the_engine_without_importing_it(fake_package, cli):
    code, out, _ = cli("infer", "--help")
    assert code == 0 and "torch,fake}" in out
    assert "fake_engine" not in sys.modules  # names come from the entry points alone


def test_auto_opens_its_format_with_it(fake_model, rng):
    path, weight, bias = fake_model
    x = rng.normal(size=(4, 5)).astype(np.float32)
    with onebyone.open(path) as session:
        assert session.backend == "fake" and session.describe().endswith("on fake (numpy)")
        y = session.run(x)["y"]
    np.testing.assert_allclose(y, x @ weight.T + bias, rtol=1e-6, atol=1e-6)
    with pytest.raises(UserError, match="backend onnxruntime does not run it"):
        onebyone.open(path, "onnxruntime")


def test_the_server_serves_it(fake_model, rng):
    path, weight, bias = fake_model
    entries = load_models([path], "auto", None, 8, None)
    x = rng.normal(size=(2, 5)).astype(np.float32)
    with BackgroundServer(create_app(entries, 1 << 20, None)) as server:
        client = triton.InferenceServerClient(server.url)
        assert client.get_model_metadata("tiny")["platform"] == "fake_platform"
        tensor = triton.InferInput("x", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        y = client.infer("tiny", [tensor]).as_numpy("y")
        client.close()
    assert y.shape == (2, 3)
    np.testing.assert_allclose(y, x @ weight.T + bias, rtol=1e-6, atol=1e-6)


def test_an_entry_point_that_is_no_engine_is_refused_by_name_and_skipped_otherwise(install):
    install("fake = fake_engine:ENGINE\nbroken = broken_engine:ENGINE\nmissing = no_such_module:ENGINE")
    with pytest.raises(UserError, match=r"entry point 'broken' \(broken_engine:ENGINE\) is not an Engine named"):
        engines.engine("broken")
    with pytest.raises(UserError, match=r"entry point 'missing' .* does not load: ModuleNotFoundError"):
        engines.engine("missing")
    with pytest.warns(OnebyoneWarning, match="'broken'"):
        loaded = engines.engines()
    assert [e.name for e in loaded] == [*(e.name for e in engines.BUILTIN), "fake"]
