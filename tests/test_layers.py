"""The layer map of onebyone/runtime/__init__.py, kept: every import between onebyone's modules (top-level or inside
a function) goes down or sideways in the map, only the commands layer imports argparse, and no two modules import
each other, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

import onebyone.runtime
from tests.helpers import REPO

FOLDERS = {"export": "onebyone.export", "optimize": "onebyone.optimize", "runtime": "onebyone.runtime"}
API = REPO / "runtime" / "api"


def module_name(path: Path) -> str:
    if path.parent == API:
        return "onebyone" if path.stem == "__init__" else f"onebyone.{path.stem}"
    folder, *rest = path.relative_to(REPO).with_suffix("").parts
    name = ".".join([FOLDERS[folder], *rest])
    return name.removesuffix(".__init__")


def layer_of(module: str) -> str:
    """`onebyone.runtime.core.files` → `runtime.core`; `onebyone.export.zoo` → `export`; `onebyone` → `api`;
    `onebyone.__main__` (`python -m onebyone`) is the command line's, so `runtime.commands`."""
    parts = module.split(".")
    if parts[1:2] == ["__main__"]:
        return "runtime.commands"
    if parts[1:2] == ["runtime"]:
        return ".".join(parts[1:3]) if len(parts) > 2 else "runtime"
    return parts[1] if parts[1:2] in (["export"], ["optimize"]) else "api"


def imports_of(path: Path) -> tuple[set[str], set[str]]:
    """(onebyone names it imports, other top-level packages it imports), from every import statement; `from a.b
    import c` imports both `a.b` and `a.b.c`, which may be a module."""
    ours: set[str] = set()
    others: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            (ours if name.split(".")[0] == "onebyone" else others).add(name if name == "onebyone" or
                                                                       name.startswith("onebyone.") else
                                                                       name.split(".")[0])
    return ours, others


def graph() -> dict[str, tuple[set[str], set[str]]]:
    paths = sorted(p for folder in FOLDERS for p in (REPO / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return {module_name(p): imports_of(p) for p in paths}


def test_the_map_names_every_layer():
    assert {layer_of(m) for m in graph()} - {"runtime"} == set(onebyone.runtime.LAYERS)


def upward_imports(modules: dict[str, tuple[set[str], set[str]]]) -> list[str]:
    allowed = onebyone.runtime.LAYERS
    return sorted(f"{module} ({layer_of(module)}) imports {target} ({layer_of(target)})"
                  for module, (ours, _) in modules.items() for target in ours
                  if "runtime" not in (layer_of(module), layer_of(target))  # the map itself, runtime/__init__.py
                  and layer_of(target) not in {layer_of(module), *allowed[layer_of(module)]})


def test_every_import_goes_down_the_layer_map():
    assert upward_imports(graph()) == []


def test_only_the_commands_layer_parses_arguments():
    parsers = sorted(module for module, (_, others) in graph().items() if "argparse" in others)
    assert parsers and all(layer_of(module) == "runtime.commands" for module in parsers), parsers


def test_no_import_cycle_between_modules():
    modules = graph()
    edges = {m: {t for t in ours if t in modules and t != m} for m, (ours, _) in modules.items()}
    state: dict[str, str] = {}
    cycles: list[list[str]] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                cycles.append([*trail[trail.index(target):], target] if target in trail else [module, target])
            elif target not in state:
                visit(target, [*trail, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_rule_sees_an_upward_import(tmp_path):
    """A bundle module importing a session, or export importing optimize, is reported."""
    source = tmp_path / "golden.py"
    source.write_text("def f():\n    from onebyone.runtime import sessions\n")
    modules = {"onebyone.runtime.bundle.golden": imports_of(source),
               "onebyone.export.zoo": ({"onebyone.optimize.graph", "onebyone.runtime.core.errors"}, set())}
    assert upward_imports(modules) == [
        "onebyone.export.zoo (export) imports onebyone.optimize.graph (optimize)",
        "onebyone.runtime.bundle.golden (runtime.bundle) imports onebyone.runtime.sessions (runtime.sessions)"]


def test_no_test_module_imports_another():
    """Shared test code lives in helper modules (tests/helpers.py, graphs.py, exports.py, formats.py, cpus.py, ...)
    and fixtures, never in a test module or conftest.py, so running one test file never collects another."""
    found = []
    for path in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tests."):
                leaf = node.module.rpartition(".")[2]
                if leaf.startswith("test_") or leaf == "conftest":
                    found.append(f"{path.relative_to(REPO)} imports {node.module}")
    assert found == []
