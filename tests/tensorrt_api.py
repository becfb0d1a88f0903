"""Check the TensorRT names a source file uses against the real TensorRT Python bindings, read from the source.

    LD_LIBRARY_PATH=STUBS PYTHONPATH=BINDINGS python tests/tensorrt_api.py FILE.py... → JSON on stdout

Run in a subprocess per TensorRT version (tests/test_tensorrt_api.py) with the bindings wheel unpacked on
PYTHONPATH and stub `libnvinfer`/`libnvonnxparser`/`libnvinfer_plugin` on LD_LIBRARY_PATH: nothing is executed
against TensorRT, only introspected. Each function of each file is read with `ast` and evaluated symbolically,
statement by statement:

- `trt` is a parameter named `trt` or the result of `import_tensorrt()`; `trt.X` must exist;
- `trt.C(...)` is an instance of class C; `obj.m(...)` a call of method m, whose return type is read from the
  pybind signature (`-> tensorrt_bindings.tensorrt.INetworkDefinition`); `obj.p` a property, typed by its getter;
  assignments carry those types to names and to `self.<attribute>` across a class's methods;
- every attribute looked up on a TensorRT module, class, instance or enum member must exist; every call must fit
  one of the pybind overloads (positional count, keyword names); every property assigned must be settable;
- a name inside `if hasattr(X, "name"):` or read with `getattr(X, "name", default)` is guarded, not required;
- a call of a function of the same file with TensorRT-typed arguments checks its body again with those types.

The JSON lists what was checked ("Class.name") and every problem found ("file:line: ...").
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorrt_bindings as trt

UNKNOWN = object()


@dataclass(frozen=True)
class Instance:
    cls: type


@dataclass(frozen=True)
class Method:
    cls: type
    name: str


@dataclass(frozen=True)
class Signature:
    required: int
    total: int
    names: tuple[str, ...]
    returns: str


def _split_parameters(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[(<{"
        depth -= char in "])>}"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [p for p in [*parts, current.strip()] if p]


def signatures(function: Any, name: str) -> list[Signature]:
    """The pybind overloads of `function` (its docstring's `name(self: ..., a: T, b: T = d) -> R` lines)."""
    found = []
    for line in (getattr(function, "__doc__", None) or "").splitlines():
        match = re.match(rf"^(?:\d+\. )?{re.escape(name)}\((.*)\) -> (.*)$", line.strip())
        if match is None or match.group(1) == "*args, **kwargs":
            continue
        parameters = _split_parameters(match.group(1))[1:]  # without self
        names = tuple(p.split(":")[0].split("=")[0].strip() for p in parameters)
        required = sum("=" not in p for p in parameters)
        found.append(Signature(required, len(parameters), names, match.group(2)))
    return found


def _type_named(annotation: str) -> Any:
    """An instance of the TensorRT class an annotation names (`tensorrt_bindings.tensorrt.X`), else UNKNOWN."""
    if annotation.startswith(("list[", "tuple[", "typing.List", "typing.Tuple")):
        return UNKNOWN
    match = re.search(r"tensorrt_bindings\.tensorrt\.([\w.]+)", annotation)
    if match is None:
        return UNKNOWN
    found: Any = trt
    for part in match.group(1).split("."):
        found = getattr(found, part, None)
    return Instance(found) if isinstance(found, type) else UNKNOWN


def _is_enum_class(value: Any) -> bool:
    return isinstance(value, type) and hasattr(value, "__members__")


def _is_trt_class(value: Any) -> bool:
    return isinstance(value, type) and value.__module__.startswith("tensorrt_bindings")


class Checker:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.checked: set[str] = set()
        self.problems: list[str] = []
        self.functions: dict[str, ast.FunctionDef] = {}
        self.typed_calls: set[tuple] = set()

    def _problem(self, node: ast.AST, message: str) -> None:
        self.problems.append(f"{self.path.name}:{node.lineno}: {message}")

    # --- statements --------------------------------------------------------------------------------------------

    def module(self, tree: ast.Module) -> None:
        self.functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                self.function(node, {}, None)
            elif isinstance(node, ast.ClassDef):
                attributes: dict[str, Any] = {}
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        self.function(item, {}, attributes)

    def function(self, node: ast.FunctionDef, outer: dict[str, Any], attributes: dict[str, Any] | None,
                 arguments: dict[str, Any] | None = None) -> None:
        env = dict(outer)
        for argument in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            env[argument.arg] = trt if argument.arg == "trt" else (arguments or {}).get(argument.arg, UNKNOWN)
        self.block(node.body, env, attributes, frozenset())

    def block(self, statements: list[ast.stmt], env: dict[str, Any], attributes: dict[str, Any] | None,
              guards: frozenset[tuple[str, str]]) -> None:
        for statement in statements:
            self.statement(statement, env, attributes, guards)

    def statement(self, node: ast.stmt, env: dict[str, Any], attributes: dict[str, Any] | None,
                  guards: frozenset[tuple[str, str]]) -> None:
        evaluate = lambda expression: self.expr(expression, env, attributes, guards)  # noqa: E731
        if isinstance(node, ast.FunctionDef):
            self.function(node, env, attributes)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            value = evaluate(node.value) if node.value is not None else UNKNOWN
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                self.assign(target, value, env, attributes, guards)
        elif isinstance(node, ast.If):
            evaluate(node.test)
            self.block(node.body, env, attributes, guards | self.hasattr_guards(node.test))
            self.block(node.orelse, env, attributes, guards)
        elif isinstance(node, ast.With):
            for item in node.items:
                value = evaluate(item.context_expr)
                if item.optional_vars is not None:
                    self.assign(item.optional_vars, value, env, attributes, guards)
            self.block(node.body, env, attributes, guards)
        elif isinstance(node, ast.For):
            evaluate(node.iter)
            self.assign(node.target, UNKNOWN, env, attributes, guards)
            self.block(node.body, env, attributes, guards)
            self.block(node.orelse, env, attributes, guards)
        elif isinstance(node, ast.While):
            evaluate(node.test)
            self.block(node.body, env, attributes, guards)
        elif isinstance(node, ast.Try):
            self.block(node.body, env, attributes, guards)
            for handler in node.handlers:
                self.block(handler.body, env, attributes, guards)
            self.block(node.orelse, env, attributes, guards)
            self.block(node.finalbody, env, attributes, guards)
        else:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    evaluate(child)

    def assign(self, target: ast.expr, value: Any, env: dict[str, Any], attributes: dict[str, Any] | None,
               guards: frozenset[tuple[str, str]]) -> None:
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, ast.Attribute):
            if isinstance(target.value, ast.Name) and target.value.id == "self" and attributes is not None:
                attributes[target.attr] = value
                return
            owner = self.expr(target.value, env, attributes, guards)
            if isinstance(owner, Instance) and _is_trt_class(owner.cls):
                self.checked.add(f"{owner.cls.__name__}.{target.attr}")
                found = inspect.getattr_static(owner.cls, target.attr, None)
                if found is None:
                    self._problem(target, f"{owner.cls.__name__} has no attribute {target.attr!r}")
                elif not isinstance(found, property) or found.fset is None:
                    self._problem(target, f"{owner.cls.__name__}.{target.attr} cannot be assigned")
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self.assign(element, UNKNOWN, env, attributes, guards)

    @staticmethod
    def hasattr_guards(test: ast.expr) -> frozenset[tuple[str, str]]:
        """(dumped object expression, name) for each `hasattr(X, "name")` the test requires."""
        calls = [test] if not isinstance(test, ast.BoolOp) else test.values
        return frozenset((ast.dump(call.args[0]), call.args[1].value) for call in calls
                         if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                         and call.func.id == "hasattr" and len(call.args) == 2
                         and isinstance(call.args[1], ast.Constant))

    # --- expressions -------------------------------------------------------------------------------------------

    def expr(self, node: ast.expr, env: dict[str, Any], attributes: dict[str, Any] | None,
             guards: frozenset[tuple[str, str]]) -> Any:
        if isinstance(node, ast.Name):
            return env.get(node.id, UNKNOWN)
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id == "self" and attributes is not None:
                return attributes.get(node.attr, UNKNOWN)
            owner = self.expr(node.value, env, attributes, guards)
            return self.attribute(node, owner, (ast.dump(node.value), node.attr) in guards)
        if isinstance(node, ast.Call):
            return self.call(node, env, attributes, guards)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self.expr(child, env, attributes, guards)
            elif isinstance(child, ast.comprehension):
                self.expr(child.iter, env, attributes, guards)
                for condition in child.ifs:
                    self.expr(condition, env, attributes, guards)
        return UNKNOWN

    def attribute(self, node: ast.Attribute, owner: Any, guarded: bool) -> Any:
        name = node.attr
        if owner is trt:
            label, holder = f"tensorrt.{name}", trt
        elif _is_trt_class(owner):
            label, holder = f"{owner.__name__}.{name}", owner
        elif isinstance(owner, Instance) and _is_trt_class(owner.cls):
            label, holder = f"{owner.cls.__name__}.{name}", owner.cls
        elif owner is not UNKNOWN and _is_trt_class(type(owner)):  # an enum member: .name, .value
            label, holder = f"{type(owner).__name__}.{name}", type(owner)
        else:
            return UNKNOWN
        if guarded:
            self.checked.add(f"{label} (guarded)")
            return getattr(holder, name, UNKNOWN)
        self.checked.add(label)
        if not hasattr(holder, name):
            self._problem(node, f"TensorRT {trt.__version__} has no {label}")
            return UNKNOWN
        if isinstance(owner, Instance):
            found = inspect.getattr_static(holder, name)
            if isinstance(found, property):
                return _type_named(next((s.returns for s in signatures(found.fget, "")), "")) if found.fget \
                    else UNKNOWN
            return Method(holder, name)
        return getattr(holder, name)

    def call(self, node: ast.Call, env: dict[str, Any], attributes: dict[str, Any] | None,
             guards: frozenset[tuple[str, str]]) -> Any:
        values = [self.expr(argument, env, attributes, guards) for argument in node.args]
        for keyword in node.keywords:
            self.expr(keyword.value, env, attributes, guards)
        if isinstance(node.func, ast.Name) and node.func.id == "import_tensorrt":
            return trt
        local = self.functions.get(node.func.id) if isinstance(node.func, ast.Name) else None
        if local is not None and any(isinstance(v, Instance) for v in values):
            names = [a.arg for a in [*local.args.posonlyargs, *local.args.args]]
            typed = {name: value for name, value in zip(names, values, strict=False) if isinstance(value, Instance)}
            key = (local.name, tuple(sorted((k, v.cls.__name__) for k, v in typed.items())))
            if key not in self.typed_calls:  # each typing once (and no endless recursion)
                self.typed_calls.add(key)
                self.function(local, {}, None, typed)
        if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) == 3:
            owner = self.expr(node.args[0], env, attributes, guards)
            if isinstance(node.args[1], ast.Constant):  # getattr with a default: guarded
                synthetic = ast.Attribute(value=node.args[0], attr=node.args[1].value, lineno=node.lineno)
                return self.attribute(synthetic, owner, guarded=True)
            return UNKNOWN
        function = self.expr(node.func, env, attributes, guards)
        if _is_trt_class(function) and not _is_enum_class(function):
            self.check_arguments(node, function.__init__, "__init__", function.__name__)
            return Instance(function)
        if isinstance(function, Method):
            found = getattr(function.cls, function.name)
            overloads = self.check_arguments(node, found, function.name, f"{function.cls.__name__}.{function.name}")
            returns = {s.returns for s in overloads}
            return _type_named(returns.pop()) if len(returns) == 1 else UNKNOWN
        return UNKNOWN

    def check_arguments(self, node: ast.Call, function: Any, name: str, label: str) -> list[Signature]:
        overloads = signatures(function, name)
        if not overloads or any(isinstance(a, ast.Starred) for a in node.args) or \
                any(k.arg is None for k in node.keywords):
            return overloads
        positional, keywords = len(node.args), [k.arg for k in node.keywords]
        fits = [s for s in overloads if positional <= s.total and set(keywords) <= set(s.names[positional:])
                and s.required <= positional + len(keywords)]
        if not fits:
            shown = " | ".join(f"({', '.join(s.names)})" for s in overloads)
            self._problem(node, f"{label} called with {positional} positional and keywords {keywords}; "
                                f"TensorRT {trt.__version__} takes {shown}")
        return fits or overloads


def main(paths: list[str]) -> None:
    checked: set[str] = set()
    problems: list[str] = []
    for path in map(Path, paths):
        checker = Checker(path)
        checker.module(ast.parse(path.read_text(), str(path)))
        checked |= checker.checked
        problems += checker.problems
    print(json.dumps({"version": trt.__version__, "checked": sorted(checked), "problems": problems}))


if __name__ == "__main__":
    main(sys.argv[1:])
