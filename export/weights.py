"""Loading a user's state_dict: all of it or nothing, with every mismatch reported."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from onebyone.runtime.core.errors import UserError

SHOWN_KEYS = 8  # list at most this many keys per kind of mismatch


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a malformed file makes torch.load raise almost anything (IndexError, EOFError, ...)
        raise UserError(f"cannot read weights {path}: {str(err).splitlines()[0]}; save them with "
                        "torch.save(model.state_dict(), path)") from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):  # common checkpoint layout
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise UserError(f"{path} is not a state_dict (a dict of tensors); save it with "
                        "torch.save(model.state_dict(), path)")
    if loaded and all(key.startswith("module.") for key in loaded):  # saved from DataParallel/DDP
        loaded = {key.removeprefix("module."): value for key, value in loaded.items()}
    return loaded


def _listing(keys: list[str]) -> str:
    more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
    return ", ".join(keys[:SHOWN_KEYS]) + more


def load_weights(model: nn.Module, path: Path) -> None:
    """Load `path` into `model` strictly; on any missing/unexpected key or shape mismatch, load nothing."""
    state = _read_state_dict(path)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = sorted(f"{key} {tuple(state[key].shape)} vs model {tuple(expected[key].shape)}"
                         for key in set(state) & set(expected) if state[key].shape != expected[key].shape)
    problems = [f"{label} keys: {_listing(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("wrong-shape", wrong_shape)) if keys]
    if problems:
        raise UserError(f"weights {path} do not match the model ({'; '.join(problems)}); nothing was loaded — "
                        "check that the file belongs to this architecture")
    model.load_state_dict(state, strict=True)
