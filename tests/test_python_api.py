"""The stages from Python (runtime/api/stages.py): the same options give the same file, record and checks as the
command line, and nothing is printed — the result object carries it."""

from __future__ import annotations

import onnx
import pytest

import onebyone
from onebyone import stages
from onebyone.runtime.bundle.manifest import read_manifest
from onebyone.runtime.core.cache import cache_dir
from tests.helpers import REPO


def test_quantize_from_python_writes_what_the_cli_writes(bundle_copy, cli, capsys):
    bundle = bundle_copy("digits_resnet")
    code, out, err = cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits",
                         "--flavour", "ort", "-o", bundle / "cli.onnx")
    assert code == 0, out + err
    result = stages.quantize(bundle / "model.onnx", precision="int8", calib="digits", flavour="ort",
                               output=bundle / "python.onnx")
    assert capsys.readouterr().out == ""  # progress bars aside (stderr), a library prints nothing
    assert result.output == bundle / "python.onnx" and result.in_bundle and result.precision == "int8"
    cli_file, python_file = (onnx.load(str(bundle / name)) for name in ("cli.onnx", "python.onnx"))
    assert cli_file.graph.SerializeToString() == python_file.graph.SerializeToString()
    manifest = read_manifest(bundle)
    assert result.record == manifest.artifacts["cli.onnx"].made_by == manifest.artifacts["python.onnx"].made_by
    assert result.summary.split("  ", 1)[1] in out  # the same verdict line, the same figures
    assert "calibration: " in result.messages[0]  # the CLI's run calibrated; this one reused its calib.json
    assert all(message in out for message in result.messages[1:])
    assert set(result.kernel_checks) == set(manifest.artifacts["python.onnx"].kernel_checks[
        next(iter(manifest.artifacts["python.onnx"].kernel_checks))])
    assert result.auto_engine in result.kernel_checks and result.kernel_checks[result.auto_engine].ok


def test_options_are_checked_as_the_cli_checks_flags(exported, cli):
    source = exported("digits_resnet").onnx_path
    with pytest.raises(onebyone.UserError, match=r"^precision=int8 needs calibration data: calib=DATA "):
        stages.quantize(source, precision="int8")  # options named as a Python caller wrote them ...
    code, _, err = cli("quantize", source, "--precision", "int8")
    assert code == 2 and "error: --precision int8 needs calibration data: --calib DATA (" in err  # ... flags in the CLI
    with pytest.raises(onebyone.UserError, match="1 <= min_batch=4 <= opt_batch=2 <= max_batch=8"):
        stages.build(source, min_batch=4, opt_batch=2, max_batch=8)
    with pytest.raises(onebyone.UserError, match="unknown flavour 'tensorrt'"):
        stages.quantize(source, stages.QuantizeOptions(precision="int8", calib="digits", flavour="tensorrt"))
    with pytest.raises(TypeError, match="not both"):
        stages.quantize(source, stages.QuantizeOptions(precision="fp16"), precision="fp16")


def test_optimize_from_python_writes_what_the_cli_writes(bundle_copy, cli, capsys):
    bundle = bundle_copy("digits_resnet")
    code, out, err = cli("optimize", bundle / "model.onnx", "--target", "trt", "-o", bundle / "cli.onnx")
    assert code == 0, out + err
    result = stages.optimize(bundle / "model.onnx", target="trt", verify=True, output=bundle / "python.onnx")
    assert capsys.readouterr().out == ""
    cli_file, python_file = (onnx.load(str(bundle / name)) for name in ("cli.onnx", "python.onnx"))
    assert cli_file.graph.SerializeToString() == python_file.graph.SerializeToString()
    assert result.record == read_manifest(bundle).artifacts["cli.onnx"].made_by
    assert [report.name for report in result.passes] == result.record["passes"]
    assert all(report.verification is not None for report in result.passes if report.changed)
    assert result.summary.split("  ", 1)[1] in out


def test_export_from_python_writes_what_the_cli_writes(tmp_path, cli, capsys):
    code, out, err = cli("export", "digits_resnet", "-o", tmp_path / "cli")
    assert code == 0, out + err
    result = stages.export("digits_resnet", output=tmp_path / "python")
    assert capsys.readouterr().out == ""
    assert result.onnx_path == tmp_path / "python" / "model.onnx" and result.check.ok
    cli_file, python_file = (onnx.load(str(tmp_path / folder / "model.onnx")) for folder in ("cli", "python"))
    assert cli_file.graph.SerializeToString() == python_file.graph.SerializeToString()
    assert f"ORT vs torch: {result.check.describe()}" in out
    with pytest.raises(onebyone.UserError, match="does not exist"):
        stages.export("digits_resnet", stages.ExportOptions(weights=tmp_path / "missing.pth"))


def test_parity_from_python_reports_what_the_cli_prints(bundle_copy, cli, capsys):
    bundle = bundle_copy("digits_resnet")
    assert stages.quantize(bundle / "model.onnx", precision="fp16").output == bundle / "model.fp16.onnx"
    code, out, err = cli("parity", bundle, bundle / "model.onnx", bundle / "model.fp16.onnx", "--data", "digits")
    assert code == 0, out + err
    result = stages.parity(bundle, [bundle / "model.onnx", bundle / "model.fp16.onnx"], data="digits")
    assert capsys.readouterr().out == ""
    assert not result.failed and [r["precision"] for r in result.candidates] == ["fp32", "fp16"]
    assert f"reference accuracy: {result.reference_accuracy.describe()}" in out
    for record in result.candidates:
        assert f"top-1 {record['accuracy']['top1']:.2%}" in out and record["metrics"]["cosine"] > 0.999
    strict = stages.parity(bundle, [bundle / "model.fp16.onnx"], data="digits", max_rel=1e-9, layers=False)
    assert strict.failed == [strict.candidates[0]["artifact"]]  # out of bounds is a result, not an exception


def test_the_python_api_doc_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/python-api.md's example, executed in a scratch folder, no subprocess: run from another working directory,
    it finds the weights trained earlier in the user's cache (none of it is under the scratch folder)."""
    text = (REPO / "docs" / "python-api.md").read_text()
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    before = cache_dir()
    monkeypatch.chdir(tmp_path)
    assert cache_dir() == before and before.is_absolute()
    exec(compile(code, "docs/python-api.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.count("parity: ") == 2 and "open: " in printed and "(auto)" in printed
    assert (tmp_path / "build" / "digits_resnet" / "model.opt.int8-ort.onnx").is_file()


def test_verify_from_python_reports_what_the_cli_prints(bundle_copy, cli, capsys):
    bundle = bundle_copy("digits_resnet")
    stages.quantize(bundle / "model.onnx", precision="int8", calib="digits", flavour="ort")
    code, out, err = cli("verify", bundle)
    assert code == 0, out + err
    result = stages.verify(bundle)
    assert capsys.readouterr().out == ""
    assert [a.name for a in result.artifacts] == ["model.onnx", "model.int8-ort.onnx"] and not result.failed
    for artifact in result.artifacts:
        assert f"{artifact.name:<24} {artifact.precision:<5} {artifact.verdict}" in out
    int8 = result.artifacts[1]
    assert int8.auto_engine in int8.kernel_checks and f"{int8.auto_engine:<11} kernel check PASS" in out
    (bundle / "model.onnx").write_bytes((bundle / "model.onnx").read_bytes() + b"\0")
    assert stages.verify(bundle).failed == ["model.onnx"]  # modified since recorded: a result, not an exception
