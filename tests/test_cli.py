"""User errors give one clear message and exit code 2, with no traceback and no file left behind."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from onebyone.export.zoo import ZOO
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, MANIFEST_NAME
from tests.helpers import REPO, files_under


def test_unknown_model_lists_the_valid_ones(tmp_path, cli):
    code, _, err = cli("export", "resnet5O", "-o", tmp_path / "b")
    assert code == 2 and "unknown model 'resnet5O'" in err
    assert all(name in err for name in ZOO)
    assert files_under(tmp_path) == []


def test_console_script_prints_no_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "onebyone", "export", "nosuchnet", "-o",
                           str(tmp_path / "b")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert "unknown model 'nosuchnet'" in done.stderr and "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("text", ["3,224", "a,b,c", "0,8,8", "-1,8,8", "1,8,8,8", ""])
def test_malformed_input_shape(text, tmp_path, cli):
    code, _, err = cli("export", "digits_resnet", f"--input-shape={text}", "-o", tmp_path / "b")
    assert code == 2 and "--input-shape" in err and "C,H,W" in err
    assert files_under(tmp_path) == []


def test_unwritable_output(tmp_path, cli):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = cli("export", "digits_resnet", "-o", blocker / "bundle")
    assert code == 2 and "cannot write to" in err and "-o" in err
    assert files_under(tmp_path) == ["a-file"]


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user package on sys.path with good and bad factories."""
    (tmp_path / "usernets.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def tiny():
            return nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1))

        def noisy():
            class Noisy(nn.Module):
                def forward(self, x):
                    return x + torch.rand_like(x)
            return Noisy()

        def two_outputs():
            class Pair(nn.Module):
                def forward(self, x):
                    return x, x * 2
            return Pair()

        def not_a_module():
            return 42

        def broken():
            raise RuntimeError("factory exploded")
    """))
    (tmp_path / "badimport.py").write_text("import no_such_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_user_factory_exports_and_matches_torch(user_module, cli):
    code, out, err = cli("export", "usernets:tiny", "--input-shape", "2,6,6", "-o", user_module / "out")
    assert code == 0, err
    assert "PASS" in out
    assert sorted(files_under(user_module / "out")) == [GOLDEN_NAME, MANIFEST_NAME, "model.onnx"]


@pytest.mark.parametrize(("factory", "message"), [
    ("no_such_package.nets:resnet", "cannot import 'no_such_package.nets'"),
    ("badimport:anything", "No module named 'no_such_dependency'"),
    ("usernets:missing", "has no callable 'missing'"),
    ("usernets:not_a_module", "returned int, not a torch.nn.Module"),
    ("usernets:broken", "factory exploded"),
    ("usernets:two_outputs", "returns 2 outputs"),
    ("usernets:", "not of the form package.module:factory"),
])
def test_bad_factories(factory, message, user_module, cli):
    code, _, err = cli("export", factory, "--input-shape", "2,6,6", "-o", user_module / "out")
    assert code == 2 and message in err, err
    assert files_under(user_module / "out") == []


def test_export_that_disagrees_with_torch_writes_nothing(user_module, cli):
    code, _, err = cli("export", "usernets:noisy", "--input-shape", "2,6,6", "-o", user_module / "out")
    assert code == 1 and "\ncheck failed: the exported ONNX" in err and "does not match torch" in err
    assert "nothing was written" in err
    assert files_under(user_module / "out") == []


def test_exporting_to_a_file_name(tmp_path, cli):
    code, _, err = cli("export", "inception_block", "-o", tmp_path / "nets" / "block.onnx")
    assert code == 0, err
    assert files_under(tmp_path / "nets") == sorted([GOLDEN_NAME, "block.onnx", MANIFEST_NAME])


def test_usage_errors_are_one_line(cli):
    """argparse's usage block is replaced by one `error:` line naming where the options are listed; a shape list
    with a negative number is a value, not an unknown option."""
    for argv, message in ((["bench", "x", "--batch", "-4"], "argument --batch: '-4' is not a comma-separated list"),
                          (["export", "digits_resnet", "--input-shape", "-1,8,8", "-o", "/nonexistent/b"],
                           "--input-shape '-1,8,8' is not C,H,W"),
                          (["frobnicate"], "invalid choice: 'frobnicate'")):
        code, out, err = cli(*argv)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert "usage:" not in err + out
        assert ("--help` lists the options" in err) is (argv[0] != "export"), "argparse's errors name --help"


def test_usage_errors_exit_2(cli):
    assert cli("export")[0] == 2
    assert cli("export", "digits_resnet", "--batch", "0")[0] == 2
    assert cli("export", "digits_resnet", "--exporter", "jit")[0] == 2
