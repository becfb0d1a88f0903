"""One installed namespace: the wheel holds only `onebyone` (every source file under it), no module imports the
repository's folder names as top-level packages, and a user's own export.py / optimize.py / runtime.py in the
working directory changes nothing."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.helpers import REPO

FOLDERS = ("export", "optimize", "runtime")


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)


def test_no_module_imports_a_folder_name_as_a_top_level_package():
    offenders = []
    for path in [*sources(), *(REPO / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                     else [])
            offenders += [f"{path.relative_to(REPO)}: {name}" for name in names if name.split(".")[0] in FOLDERS]
    assert offenders == []


def test_the_wheel_installs_only_onebyone_and_every_source_file(tmp_path):
    source = tmp_path / "source"  # a copy without build/: setuptools would pack stale files left in build/lib
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns("build", ".venv", ".git", "__pycache__", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("onebyone-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["onebyone"]
    assert {n.split("/")[0] for n in names} == {"onebyone", wheel.name.split("-py3")[0] + ".dist-info"}
    expected = {f"onebyone/{p.relative_to(REPO / 'runtime' / 'api')}" if p.parent == REPO / "runtime" / "api"
                else f"onebyone/{p.relative_to(REPO)}" for p in sources()}
    assert expected == {n for n in names if n.endswith(".py")}
    tables = {f"onebyone/{p.relative_to(REPO)}" for p in (REPO / "runtime" / "preflight" / "tables").glob("*.json")}
    assert tables and tables <= set(names), "TensorRT's parser tables ship with the package"


def test_users_modules_named_like_our_folders_change_nothing(tmp_path, exported):
    """From a directory holding export.py, optimize.py and runtime.py that would fail on import: the public API, a
    session (whose backend loads lazily) and the console script all work."""
    for name in FOLDERS:
        (tmp_path / f"{name}.py").write_text(f"raise SystemExit('the user\\'s own {name}.py was imported')\n")
    bundle = exported("digits_resnet").bundle
    code = ("import numpy, onebyone\n"
            f"with onebyone.open({str(bundle / 'model.onnx')!r}) as session:\n"
            "    print(onebyone.open.__module__, session.run(numpy.zeros((1, 1, 8, 8), 'float32'))['logits'].shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["onebyone.runtime.sessions.opening", "(1,", "10)"]
    script = Path(sys.executable).with_name("onebyone")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "quantize" in done.stdout, done.stderr
