"""Every TensorRT name onebyone uses, checked against the real TensorRT 10 and 11 Python bindings on every run.

The bindings wheels (`tensorrt-cu12-bindings`, `tensorrt-cu13-bindings`: ~1.3 MB each, the real compiled pybind
module) are fetched with pip into the cache folder once; their `tensorrt.so` needs nine C symbols from
`libnvinfer`, `libnvonnxparser` and `libnvinfer_plugin`, which small stub libraries of those sonames provide (built
here with the system C compiler, every function returning 0). `import tensorrt_bindings` then works on a CPU, and
tests/tensorrt_api.py checks, in a subprocess per version, every module attribute, enum member, method, property
and call signature the TensorRT modules use — read from their source, so new code is covered without a list to
keep. Nothing runs against TensorRT: semantics stay for tests/gpu/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from onebyone.runtime.core.cache import cache_dir
from tests.helpers import REPO

BINDINGS = {"10": ("tensorrt-cu12-bindings", "10.16.1.11"), "11": ("tensorrt-cu13-bindings", "11.4.0.106")}
STUB_SOURCE = """
void *createInferBuilder_INTERNAL(void *logger, int version) { return 0; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return 0; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return 0; }
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return 0; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return 0; }
void *getPluginRegistry(void) { return 0; }
void *getBuilderPluginRegistry(int capability) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
int initLibNvInferPlugins(void *logger, const char *name_space) { return 0; }
"""
LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin")
USED_CLASSES = ("Builder", "IBuilderConfig", "IOptimizationProfile", "ITimingCache", "OnnxParser", "Runtime",
                "ICudaEngine", "IExecutionContext")  # each must have checked uses, or the type tracking broke


def tensorrt_modules() -> list[Path]:
    """The modules that use TensorRT: those that import it or take it from `import_tensorrt()`."""
    return sorted(p for p in (REPO / "runtime").rglob("*.py")
                  if "import tensorrt\n" in p.read_text() or "import_tensorrt()" in p.read_text())


def fetch(version: str) -> tuple[Path, Path]:
    """(site folder with tensorrt_bindings, folder of stub libraries) for TensorRT `version`, cached."""
    package, release = BINDINGS[version]
    root = (cache_dir() / "tensorrt-bindings" / release).resolve()
    site, stubs = root / "site", root / "stubs"
    if not (site / "tensorrt_bindings" / "tensorrt.so").is_file():
        wheels = root / "wheels"
        download = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                                   "--python-version", "3.11", "--platform", "manylinux_2_28_x86_64",
                                   f"{package}=={release}", "-d", str(wheels), "-q"],
                                  capture_output=True, text=True, timeout=600)
        found = sorted(wheels.glob("*.whl")) if wheels.is_dir() else []
        if download.returncode != 0 or not found:
            pytest.skip(f"{package}=={release} could not be fetched and is not cached: "
                        f"{download.stderr.strip().splitlines()[-1:] or download.returncode}")
        with zipfile.ZipFile(found[0]) as wheel:
            wheel.extractall(site)
    if not all((stubs / f"lib{name}.so.{version}").is_file() for name in LIBRARIES):
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            pytest.skip("no C compiler to build the TensorRT stub libraries with")
        stubs.mkdir(parents=True, exist_ok=True)
        (stubs / "stub.c").write_text(STUB_SOURCE)
        for name in LIBRARIES:
            subprocess.run([compiler, "-shared", "-fPIC", "-o", str(stubs / f"lib{name}.so.{version}"),
                            str(stubs / "stub.c"), f"-Wl,-soname,lib{name}.so.{version}"], check=True)
    return site, stubs


def check(version: str, paths: list[Path]) -> dict:
    site, stubs = fetch(version)
    env = {**os.environ, "PYTHONPATH": str(site), "LD_LIBRARY_PATH": str(stubs)}
    result = subprocess.run([sys.executable, str(REPO / "tests" / "tensorrt_api.py"), *map(str, paths)],
                            capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


@pytest.mark.parametrize("version", sorted(BINDINGS))
def test_every_tensorrt_name_onebyone_uses_exists_in_the_real_bindings(version):
    modules = tensorrt_modules()
    assert {p.name for p in modules} >= {"tensorrt_backend.py", "tensorrt_build.py"}
    report = check(version, modules)
    assert report["version"] == BINDINGS[version][1]
    assert report["problems"] == []
    used = {name.split(".")[0] for name in report["checked"]}
    assert set(USED_CLASSES) <= used, f"no checked uses of {sorted(set(USED_CLASSES) - used)}"
    print(f"TensorRT {report['version']}: {len(report['checked'])} names checked")


@pytest.mark.parametrize("version", sorted(BINDINGS))
def test_the_check_reports_each_wrong_name_and_nothing_else(version):
    """tests/tensorrt_misuse.py marks its wrong lines; TensorRT 11 dropped BuilderFlag.FP16 and EXPLICIT_BATCH."""
    fixture = REPO / "tests" / "tensorrt_misuse.py"
    marked = {number for number, line in enumerate(fixture.read_text().splitlines(), 1)
              if (match := re.search(r"# wrong in ([\d, ]+)$", line)) and version in match.group(1).split(", ")}
    report = check(version, [fixture])
    assert {int(problem.split(":")[1]) for problem in report["problems"]} == marked
    assert len(report["problems"]) == len(marked)
