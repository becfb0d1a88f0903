"""Golden samples — fixed reference inputs and the torch outputs for them — and running ONNX files on them."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.ort_session import ort_session

Run = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
_CASE_KEY = re.compile(r"case(\d+)/(input|output):(.*)")


@dataclasses.dataclass(frozen=True)
class Golden:
    """Reference inputs and outputs, keyed by graph input/output name; `more`: the same kind of samples at other
    input shapes (a model exported with dynamic height/width is checked at each)."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    more: tuple[Golden, ...] = ()

    def cases(self) -> list[Golden]:
        """One Golden per input shape, the export's own shape first."""
        return [Golden(self.inputs, self.outputs), *self.more]

    def shape_label(self) -> str:
        """The first input's shape after the batch axis, e.g. "3x224x224"."""
        return "x".join(str(d) for d in next(iter(self.inputs.values())).shape[1:])

    def keyed(self, per_case: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Outputs of every case in one dict: the first case's under their names, the others' as NAME@SHAPE."""
        keyed = dict(per_case[0])
        for case, outputs in zip(self.more, per_case[1:], strict=True):
            keyed |= {f"{name}@{case.shape_label()}": value for name, value in outputs.items()}
        return keyed

    def reference(self) -> dict[str, np.ndarray]:
        """The torch outputs of every case, keyed as `keyed` does."""
        return self.keyed([case.outputs for case in self.cases()])

    def run(self, run: Run) -> dict[str, np.ndarray]:
        """`run` on every case's inputs, its outputs keyed as `keyed` does."""
        return self.keyed([run(case.inputs) for case in self.cases()])

    def within(self, accepts: Callable[[dict[str, tuple[int, ...]]], bool]) -> Golden | None:
        """The cases whose input shapes `accepts` takes (an engine's optimization profiles), or None if none."""
        kept = [case for case in self.cases()
                if accepts({name: tuple(value.shape) for name, value in case.inputs.items()})]
        return dataclasses.replace(kept[0], more=tuple(kept[1:])) if kept else None

    def input_shapes(self) -> list[list[int]]:
        """The shapes of the first input the cases cover, batch axis included."""
        return [list(next(iter(case.inputs.values())).shape) for case in self.cases()]

    def save(self, path: Path) -> None:
        """Write as .npz; keys are `input:<name>` and `output:<name>` (further cases: `caseK/input:<name>`) so
        names never collide."""
        arrays: dict[str, np.ndarray] = {}
        for index, case in enumerate(self.cases()):
            prefix = f"case{index}/" if index else ""
            arrays |= {f"{prefix}input:{k}": v for k, v in case.inputs.items()}
            arrays |= {f"{prefix}output:{k}": v for k, v in case.outputs.items()}
        with path.open("wb") as stream:
            np.savez(stream, **arrays)

    @classmethod
    def load(cls, path: Path) -> Golden:
        cases: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
        try:
            with np.load(path, allow_pickle=False) as data:
                for key in data.files:
                    found = _CASE_KEY.fullmatch(key) or re.fullmatch(r"()(input|output):(.*)", key)
                    if found is not None:
                        index, kind, name = found.groups()
                        cases.setdefault(int(index or 0), ({}, {}))[kind == "output"][name] = data[key]
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read golden samples {path}: {err}; re-run `onebyone export`") from None
        if 0 not in cases or not all(inputs and outputs for inputs, outputs in cases.values()):
            raise UserError(f"{path} holds no golden inputs/outputs; re-run `onebyone export`")
        first, *more = (Golden(*cases[index]) for index in sorted(cases))
        return dataclasses.replace(first, more=tuple(more))


def reference_session(onnx_path: Path | bytes) -> object:
    """An ONNX Runtime CPU session with every graph optimization disabled: the file's own semantics, nothing fused.

    Takes a file path or a serialized model.
    """
    return ort_session(onnx_path, "none")


def run_session(session: object, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX Runtime session and return every graph output by name."""
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))
