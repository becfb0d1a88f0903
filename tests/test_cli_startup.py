"""The front door is light: `onebyone --help` and `onebyone <stage> --help` import neither torch, onnxruntime,
onnx nor onnx_ir (the stage's work imports them when it runs). docs/cli.md gives the measured time."""

from __future__ import annotations

import subprocess
import sys

import pytest

from onebyone.runtime.commands.main import STAGES
from tests.helpers import REPO

HEAVY = ("torch", "onnxruntime", "onnx", "onnx_ir", "tensorrt", "sklearn", "aiohttp", "matplotlib")
PROBE = """
import importlib, sys
for module in sys.argv[1].split(","):
    if module:
        importlib.import_module(module)
from onebyone.runtime.commands.main import main
try:
    main(sys.argv[2:])
except SystemExit as done:
    assert done.code == 0, done.code
print("heavy:", *sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[0].split(","))))
"""


def heavy_imports(*argv: str, preload: str = "") -> list[str]:
    """The heavy libraries loaded by `onebyone ARGV` (after importing the modules in `preload`)."""
    done = subprocess.run([sys.executable, "-c", PROBE.replace("sys.argv[0]", repr(",".join(HEAVY))), preload, *argv],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: onebyone" in done.stdout
    return done.stdout.splitlines()[-1].split()[1:]


@pytest.mark.parametrize("argv", [["--help"], *[[stage, "--help"] for stage in STAGES]], ids=" ".join)
def test_help_imports_no_heavy_library(argv):
    assert heavy_imports(*argv) == []


def test_the_probe_sees_a_heavy_import():
    """The probe can fail: a stage whose module loaded the exporter would be reported."""
    assert heavy_imports("export", "--help", preload="onebyone.export.onnx_export") == ["onnx", "onnx_ir", "torch"]
