"""Shared fixtures: zoo exports are made once per session, and so is `make demo`; digits_resnet trains once and is
cached under build/."""

from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from onebyone.export.options import ExportOptions
from onebyone.export.stage import ExportResult, export_bundle
from onebyone.export.zoo import resolve
from onebyone.runtime.commands.main import main
from tests.readme_demo import DEMO_IMAGES, run_demo


@pytest.fixture(scope="session")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ExportResult]:
    """export(name, **options) → the bundle, exported once per (name, options) per session."""
    cache: dict[tuple, ExportResult] = {}

    def export(name: str, **options: object) -> ExportResult:
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            folder = tmp_path_factory.mktemp(name)
            cache[key] = export_bundle(resolve(name), folder, ExportOptions(**options))
        return cache[key]

    return export


@pytest.fixture(scope="session")
def bundle_copy(exported, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """bundle_copy(name) → a private copy of a zoo model's exported bundle, which a test may add to or alter."""

    def copy(name: str) -> Path:
        folder = tmp_path_factory.mktemp(f"{name}-copy") / name
        shutil.copytree(exported(name).bundle, folder)
        return folder

    return copy


@dataclasses.dataclass(frozen=True)
class Demo:
    bundle: Path  # pretrained Lite0: FP32, optimized, FP16 and both INT8 flavours, parity.json on DEMO_IMAGES
    printed: list[str]  # what `make demo` printed, the scratch folder named as README names it


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """`make demo` run once into a scratch folder: README's demo block is compared with what it printed
    (tests/test_readme.py), and its bundle is the real network the ImageNet tests score
    (tests/test_imagenet_accuracy.py); tests that add to the bundle copy it first. Its parity run scores DEMO_IMAGES
    evaluation images instead of the Makefile's 300 (the block masks every number): the run takes half as long."""
    scratch = tmp_path_factory.mktemp("demo")
    return Demo(scratch / "efficientnet_lite0", run_demo(scratch, DEMO_IMAGES))


@pytest.fixture
def rng() -> np.random.Generator:
    """Fresh random inputs each run; the seed is printed on failure so a run can be reproduced."""
    seed = int(os.environ.get("ONEBYONE_TEST_SEED", "0")) or secrets.randbits(32)
    print(f"rng seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run `onebyone ARGS...` in-process → (exit code, stdout, stderr). Uncaught exceptions fail the test."""

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main([str(a) for a in args])
        except SystemExit as exit_:  # argparse usage errors
            code = int(exit_.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


