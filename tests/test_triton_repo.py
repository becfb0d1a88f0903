"""`onebyone triton-repo`: every config.pbtxt parses into Triton's ModelConfig protobuf (the one tritonclient ships)
and describes the model file it sits beside — the same tensors the thin server reports."""

from __future__ import annotations

import pytest
from tritonclient.grpc import model_config_pb2

from onebyone.export.options import ExportOptions
from onebyone.export.stage import export_bundle
from onebyone.export.zoo import resolve
from onebyone.runtime.core.files import sha256_file
from onebyone.runtime.serve.server import load_models
from tests.formats import parse_config, write_plan
from tests.helpers import files_under


def test_configs_parse_and_match_the_served_models(bundle_copy, cli, tmp_path):
    bundle = bundle_copy("digits_resnet")
    assert cli("quantize", bundle / "model.onnx", "--precision", "int8", "--calib", "digits", "--method", "minmax",
               "--flavour", "ort")[0] == 0
    repository = tmp_path / "model_repository"
    code, _, err = cli("triton-repo", bundle, bundle / "model.onnx", "-o", repository, "--max-batch", "16",
                         "--max-delay-ms", "0.5", "--instances", "2", "--trt-accelerator", "fp16")
    assert code == 2 and "two targets give the same model name" in err  # the bundle's model.onnx twice
    code, _, err = cli("triton-repo", bundle, bundle / "model.int8-ort.onnx", "-o", repository,
                         "--max-batch", "16", "--max-delay-ms", "0.5", "--instances", "2", "--trt-accelerator", "fp16")
    assert code == 0, err
    served = load_models([bundle, bundle / "model.int8-ort.onnx"], "auto", None, 16, 0.0005)
    assert sorted(p.name for p in repository.iterdir()) == sorted(served) == ["digits_resnet",
                                                                              "digits_resnet.int8-ort"]
    for name, entry in served.items():
        config = parse_config(repository / name / "config.pbtxt")
        expected = entry.config(500)
        assert config.name == name and config.backend == "onnxruntime" and config.max_batch_size == 16
        for kind in ("input", "output"):
            written = [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims))
                       for t in getattr(config, kind)]
            assert written == [(t["name"], t["data_type"], t["dims"]) for t in expected[kind]]
        assert config.dynamic_batching.max_queue_delay_microseconds == 500
        assert [(g.count, model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in config.instance_group] \
            == [(2, "KIND_GPU")]
        (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
        assert accelerator.name == "tensorrt" and dict(accelerator.parameters) == {"precision_mode": "FP16"}
        assert sha256_file(repository / name / "1" / "model.onnx") == sha256_file(entry.session.target.path)
        entry.session.close()


def test_a_fixed_batch_model_has_max_batch_size_zero_and_full_dims(cli, tmp_path):
    result = export_bundle(resolve("digits_resnet"), tmp_path / "fixed", ExportOptions(batch=4))
    code, _, err = cli("triton-repo", result.onnx_path, "-o", tmp_path / "repo", "--instance-kind", "cpu")
    assert code == 0, err
    config = parse_config(tmp_path / "repo" / "fixed" / "config.pbtxt")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [4, 1, 8, 8]
    assert list(config.output[0].dims) == [4, 10] and not config.HasField("dynamic_batching")
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind) == "KIND_CPU"


def test_a_plan_needs_no_gpu_to_be_described(cli, tmp_path):
    plan = write_plan(tmp_path)
    code, _, err = cli("triton-repo", plan, "-o", tmp_path / "repo", "--no-batching")
    assert code == 0, err
    config = parse_config(tmp_path / "repo" / "model" / "config.pbtxt")
    assert config.backend == "tensorrt" and config.max_batch_size == 32
    assert [model_config_pb2.DataType.Name(t.data_type) for t in [*config.input, *config.output]] == ["TYPE_FP16"] * 2
    assert not config.HasField("dynamic_batching")
    assert (tmp_path / "repo" / "model" / "1" / "model.plan").read_bytes() == b"engine"


@pytest.mark.parametrize(("args", "message"), [
    (["--instance-kind", "cpu"], "is a TensorRT plan: it runs on KIND_GPU instances only"),
    (["--trt-accelerator", "fp16"], "--trt-accelerator applies to ONNX models on GPU instances"),
    (["--max-delay-ms", "-1"], "argument --max-delay-ms: '-1' is not a number ≥ 0"),
])
def test_repository_user_errors_exit_2_and_write_nothing(cli, tmp_path, args, message):
    plan = write_plan(tmp_path)
    code, _, err = cli("triton-repo", plan, "-o", tmp_path / "repo", *args)
    assert code == 2 and message in " ".join(err.split())
    assert files_under(tmp_path / "repo") == []


def test_rewriting_a_model_replaces_its_directory(cli, tmp_path):
    plan = write_plan(tmp_path)
    assert cli("triton-repo", plan, "-o", tmp_path / "repo")[0] == 0
    (tmp_path / "repo" / "model" / "1" / "stale.txt").write_text("from an older repository")
    assert cli("triton-repo", plan, "-o", tmp_path / "repo", "--max-batch", "8")[0] == 0
    assert files_under(tmp_path / "repo") == ["model/1/model.plan", "model/config.pbtxt"]
    assert parse_config(tmp_path / "repo" / "model" / "config.pbtxt").max_batch_size == 8


def test_class_labels_become_triton_label_files(bundle_copy, cli, tmp_path):
    """Triton's own classification reads labels from `label_filename` beside config.pbtxt: the repository gives
    every classification output the bundle's labels, so Triton answers "value:index:label" as the thin server does."""
    bundle = bundle_copy("digits_resnet")
    repository = tmp_path / "model_repository"
    assert cli("triton-repo", bundle, "-o", repository)[0] == 0
    (output,) = parse_config(repository / "digits_resnet" / "config.pbtxt").output
    assert output.label_filename == "labels.txt"
    assert (repository / "digits_resnet" / "labels.txt").read_text().splitlines() == [str(d) for d in range(10)]
    assert cli("triton-repo", bundle_copy("inception_block"), "-o", repository)[0] == 0
    (features,) = parse_config(repository / "inception_block" / "config.pbtxt").output
    assert features.label_filename == "" and not (repository / "inception_block" / "labels.txt").exists()


def test_a_python_backend_model_carries_the_artifact_its_bundle_checks_and_model_py(bundle_copy, cli, tmp_path):
    bundle = bundle_copy("digits_resnet")
    code, _, err = cli("triton-repo", bundle / "model.onnx", "-o", tmp_path, "--backend", "python",
                       "--python-engine", "onnxruntime")
    assert code == 0, err
    model = tmp_path / "digits_resnet"
    config = parse_config(model / "config.pbtxt")
    assert config.backend == "python" and config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert {key: value.string_value for key, value in config.parameters.items()} == {
        "onebyone_artifact": "model.onnx", "onebyone_engine": "onnxruntime"}
    assert sorted(p.name for p in (model / "1").iterdir()) == ["golden.npz", "manifest.json", "model.onnx", "model.py"]
    assert cli("triton-repo", bundle, "-o", tmp_path / "x", "--python-engine", "openvino")[2].count(
        "--python-engine applies to --backend python") == 1
