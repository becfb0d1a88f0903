"""--weights loads a state_dict completely or not at all, and the export reflects the loaded weights."""

from __future__ import annotations

import numpy as np
import torch

from onebyone.export.models.digits import build_digits_resnet
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import GOLDEN_NAME
from tests.helpers import files_under


def other_digits_weights() -> dict[str, torch.Tensor]:
    """A digits_resnet state_dict that is not the trained one: a seed-1 random initialisation."""
    torch.manual_seed(1)
    return build_digits_resnet().state_dict()


def test_weights_load_and_change_the_export(tmp_path, cli, exported):
    state = other_digits_weights()
    torch.save(state, tmp_path / "w.pth")
    code, out, err = cli("export", "digits_resnet", "--weights", tmp_path / "w.pth", "-o", tmp_path / "bundle")
    assert code == 0, err
    golden = Golden.load(tmp_path / "bundle" / GOLDEN_NAME)
    model = build_digits_resnet()
    model.load_state_dict(state)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(golden.inputs["input"])).numpy()
    np.testing.assert_array_equal(golden.outputs["logits"], expected)
    default = Golden.load(exported("digits_resnet").bundle / GOLDEN_NAME)
    np.testing.assert_array_equal(golden.inputs["input"], default.inputs["input"])
    assert np.abs(golden.outputs["logits"] - default.outputs["logits"]).max() > 1e-2, "weights were not used"
    assert "PASS" in out


def test_data_parallel_prefix_and_checkpoint_wrapper_are_accepted(tmp_path, cli):
    state = other_digits_weights()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "ckpt.pth")
    code, _, err = cli("export", "digits_resnet", "--weights", tmp_path / "ckpt.pth", "-o", tmp_path / "b")
    assert code == 0, err


def test_renamed_key_is_named_and_nothing_is_written(tmp_path, cli):
    state = other_digits_weights()
    state["layer2.0.bn3.running_varx"] = state.pop("layer2.0.bn3.running_var")
    torch.save(state, tmp_path / "w.pth")
    code, out, err = cli("export", "digits_resnet", "--weights", tmp_path / "w.pth", "-o", tmp_path / "bundle")
    assert code == 2
    assert "missing keys: layer2.0.bn3.running_var" in err and "unexpected keys: layer2.0.bn3.running_varx" in err
    assert "nothing was loaded" in err and "Traceback" not in err + out
    assert files_under(tmp_path / "bundle") == []


def test_wrong_shape_is_named(tmp_path, cli):
    state = other_digits_weights()
    state["fc.weight"] = torch.zeros(11, 256)
    torch.save(state, tmp_path / "w.pth")
    code, _, err = cli("export", "digits_resnet", "--weights", tmp_path / "w.pth", "-o", tmp_path / "bundle")
    assert code == 2 and "wrong-shape keys: fc.weight (11, 256) vs model (10, 256)" in err
    assert files_under(tmp_path / "bundle") == []


def test_not_a_state_dict(tmp_path, cli):
    (tmp_path / "w.pth").write_bytes(b"this is not a torch file")
    code, _, err = cli("export", "digits_resnet", "--weights", tmp_path / "w.pth", "-o", tmp_path / "bundle")
    assert code == 2 and "cannot read weights" in err and "state_dict" in err
    torch.save([1, 2, 3], tmp_path / "list.pth")
    code, _, err = cli("export", "digits_resnet", "--weights", tmp_path / "list.pth", "-o", tmp_path / "bundle")
    assert code == 2 and "is not a state_dict" in err


def test_missing_weights_file(tmp_path, cli):
    code, _, err = cli("export", "digits_resnet", "--weights", tmp_path / "nope.pth", "-o", tmp_path / "bundle")
    assert code == 2 and "does not exist" in err
