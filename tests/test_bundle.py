"""Bundles: `onebyone verify` catches tampering; re-export clears stale artifacts; big models use external data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

import onebyone.runtime.bundle.onnx_file
from onebyone.export.options import ExportOptions
from onebyone.export.stage import export_bundle
from onebyone.export.zoo import ZOO
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.labelled import LABELLED_NAME
from onebyone.runtime.bundle.manifest import GOLDEN_NAME, MANIFEST_NAME, ArtifactRecord, read_manifest, write_manifest
from onebyone.runtime.bundle.tolerances import TOLERANCES, Tolerance
from onebyone.runtime.commands.main import main as cli_main
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.parity.check import check_artifact
from onebyone.runtime.parity.metrics import compare
from tests.helpers import files_under


@pytest.fixture
def bundle(exported, tmp_path):
    """A private copy of the digits bundle that a test may damage."""
    return shutil.copytree(exported("digits_resnet").bundle, tmp_path / "bundle")


def test_verify_passes_on_a_fresh_bundle(bundle, cli):
    code, out, _ = cli("verify", bundle)
    assert code == 0 and "model.onnx" in out and "PASS" in out
    assert "held-out test split (360 images)" in out and "top-1 " in out


def test_verify_reports_tampered_golden_outputs_with_the_measured_error(bundle, cli):
    golden = Golden.load(bundle / GOLDEN_NAME)
    golden.outputs["logits"][0, 3] += 0.5
    golden.save(bundle / GOLDEN_NAME)
    code, out, _ = cli("verify", bundle)
    assert code == 1 and "FAIL" in out
    parity = check_artifact(bundle / "model.onnx", golden, TOLERANCES["fp32"]).parity
    assert 0.49 < parity.max_abs_diff < 0.51 and f"{parity.max_abs_diff:.3g}" in out


def test_verify_reports_a_modified_model_file(bundle, cli):
    model = onnx.load(str(bundle / "model.onnx"))
    model.doc_string = "edited by hand"
    onnx.save(model, str(bundle / "model.onnx"))
    code, out, _ = cli("verify", bundle)
    assert code == 1 and "modified" in out


def test_verify_of_a_directory_without_manifest(tmp_path, cli):
    code, _, err = cli("verify", tmp_path)
    assert code == 2 and "not a onebyone bundle" in err


def test_corrupt_manifest_is_a_user_error(bundle, cli):
    (bundle / MANIFEST_NAME).write_text("{not json")
    code, _, err = cli("verify", bundle)
    assert code == 2 and "not a valid onebyone manifest" in err


def test_reexport_removes_artifacts_derived_from_the_old_model(bundle, cli):
    derived = bundle / "model.opt.onnx"
    shutil.copy(bundle / "model.onnx", derived)
    manifest = read_manifest(bundle)
    manifest.artifacts[derived.name] = ArtifactRecord.for_file(derived, kind="onnx", made_by={"stage": "optimize"},
                                                               precision="fp32", tolerance=TOLERANCES["fp32"])
    write_manifest(bundle, manifest)
    code, out, _ = cli("export", "digits_resnet", "-o", bundle)
    assert code == 0 and "removed stale artifact" in out
    assert not derived.exists()
    assert set(read_manifest(bundle).artifacts) == {"model.onnx", GOLDEN_NAME, LABELLED_NAME}


def test_large_models_are_written_and_optimized_with_external_data(tmp_path, monkeypatch, cli):
    # digits_resnet's weights exceed this
    monkeypatch.setattr(onebyone.runtime.bundle.onnx_file, "EXTERNAL_DATA_BYTES", 1000)
    result = export_bundle(ZOO["digits_resnet"], tmp_path / "b", ExportOptions())
    assert files_under(result.bundle) == sorted([GOLDEN_NAME, LABELLED_NAME, MANIFEST_NAME, "model.onnx",
                                                 "model.onnx.data"])
    assert (result.bundle / "model.onnx").stat().st_size < 100_000 < (result.bundle / "model.onnx.data").stat().st_size
    assert read_manifest(result.bundle).artifacts["model.onnx.data"].kind == "onnx-external-data"
    assert cli("optimize", result.bundle / "model.onnx")[0] == 0
    assert (result.bundle / "model.opt.onnx.data").stat().st_size > 100_000
    assert read_manifest(result.bundle).artifacts["model.opt.onnx.data"].made_by["belongs_to"] == "model.opt.onnx"
    code, out, _ = cli("verify", result.bundle)
    assert code == 0 and "model.opt.onnx" in out


def test_compare_counts_every_element_and_flags_non_finite():
    reference = {"y": np.ones((2, 3), dtype=np.float32)}
    candidate = {"y": np.ones((2, 3), dtype=np.float32)}
    candidate["y"][1, 2] = np.nan
    parity = compare(reference, candidate, TOLERANCES["fp32"])
    assert not parity.ok and parity.max_abs_diff == float("inf")
    candidate["y"][1, 2] = 1.0 + 2e-4
    parity = compare(reference, candidate, TOLERANCES["fp32"])
    assert not parity.ok and parity.max_abs_diff == pytest.approx(2e-4, rel=1e-3)
    with pytest.raises(UserError, match="has shape"):
        compare(reference, {"y": np.ones((3, 2), dtype=np.float32)}, TOLERANCES["fp32"])
    with pytest.raises(UserError, match="no output"):
        compare(reference, {"z": np.ones((2, 3), dtype=np.float32)}, TOLERANCES["fp32"])


def test_a_manifest_from_before_the_tolerance_table_still_reads(bundle_copy, tmp_path):
    """Bundles written before runtime/bundle/tolerances.py recorded `{"rel_max_abs": x}`: the same bound."""
    bundle = bundle_copy("digits_resnet")
    path = bundle / MANIFEST_NAME
    raw = json.loads(path.read_text())
    for record in raw["artifacts"].values():
        if record.get("tolerance"):
            record["tolerance"] = {"rel_max_abs": record["tolerance"]["max_rel"]}
    path.write_text(json.dumps(raw))
    record = read_manifest(bundle).artifacts["model.onnx"]
    assert record.tolerance == Tolerance(max_rel=TOLERANCES["fp32"].max_rel) == TOLERANCES["fp32"].golden()
    assert cli_main(["verify", str(bundle)]) == 0
