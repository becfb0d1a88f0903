"""Golden samples — fixed reference inputs and the torch outputs for them — and running ONNX files on them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from onebyone.runtime.core.errors import UserError
from onebyone.runtime.core.ort_session import ort_session


@dataclasses.dataclass(frozen=True)
class Golden:
    """Reference inputs and outputs, keyed by graph input/output name."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]

    def save(self, path: Path) -> None:
        """Write as .npz; keys are `input:<name>` and `output:<name>` so names never collide."""
        arrays = {f"input:{k}": v for k, v in self.inputs.items()} | {f"output:{k}": v for k, v in self.outputs.items()}
        with path.open("wb") as stream:
            np.savez(stream, **arrays)

    @classmethod
    def load(cls, path: Path) -> Golden:
        try:
            with np.load(path, allow_pickle=False) as data:
                inputs = {k.removeprefix("input:"): data[k] for k in data.files if k.startswith("input:")}
                outputs = {k.removeprefix("output:"): data[k] for k in data.files if k.startswith("output:")}
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read golden samples {path}: {err}; re-run `onebyone export`") from None
        if not inputs or not outputs:
            raise UserError(f"{path} holds no golden inputs/outputs; re-run `onebyone export`")
        return cls(inputs=inputs, outputs=outputs)


def reference_session(onnx_path: Path | bytes) -> object:
    """An ONNX Runtime CPU session with every graph optimization disabled: the file's own semantics, nothing fused.

    Takes a file path or a serialized model.
    """
    return ort_session(onnx_path, "none")


def run_session(session: object, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run an ONNX Runtime session and return every graph output by name."""
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))
