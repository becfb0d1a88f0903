"""Repositories written by `onebyone triton-repo`, loaded by a real tritonserver (2.51, CPU, Python backend; see
bench/tritonserver.py): an onnxruntime repository and an openvino one (through Python-based stand-ins for those
backends, which this Triton build lacks) and a `--backend python` one, all with `--instance-kind cpu`. Every model
loads and is READY; its config as Triton reports it is what onebyone wrote (batching, dims, instance kind); answers
over HTTP and gRPC equal onebyone's in-process session bit for bit; and Triton's /metrics counts them. A repository
Triton refuses fails the test with Triton's own message."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

import onebyone
from bench.serve import free_port
from bench.tritonserver import TritonServer
from tests.serving import tritonserver_or_skip

MAX_BATCH, DELAY_US = 8, 2000


@pytest.fixture(scope="module")
def served(bundle_copy, tmp_path_factory):
    """tritonserver with three repositories of digits_resnet; yields (server, {model: (artifact, engine)})."""
    from onebyone.runtime.commands.main import main

    tritonserver_or_skip()
    bundle = bundle_copy("digits_resnet")
    work = tmp_path_factory.mktemp("triton")
    for flavour in ("ort", "trt"):
        assert main(["quantize", str(bundle / "model.onnx"), "--precision", "int8", "--calib", "digits",
                     "--flavour", flavour]) == 0
    common = ["--instance-kind", "cpu", "--max-batch", str(MAX_BATCH), "--max-delay-ms", str(DELAY_US / 1000)]
    repos = {"onnxruntime": ([str(bundle)], "digits_resnet", bundle / "model.onnx", "onnxruntime"),
             "python": ([str(bundle / "model.int8-ort.onnx")], "digits_resnet.int8-ort", bundle / "model.int8-ort.onnx",
                        "auto")}
    if importlib.util.find_spec("openvino") is not None:
        repos["openvino"] = ([str(bundle / "model.int8-trt.onnx")], "digits_resnet.int8-trt",
                             bundle / "model.int8-trt.onnx", "openvino")
    models = {}
    for backend, (targets, name, artifact, engine) in repos.items():
        assert main(["triton-repo", *targets, "-o", str(work / backend), "--backend", backend, *common]) == 0
        models[name] = (artifact, engine, backend)
    with TritonServer([work / backend for backend in repos], work, (free_port(), free_port(), free_port())) as server:
        yield server, models


def test_every_model_loads_with_the_config_onebyone_wrote(served):
    server, models = served
    client = triton_http.InferenceServerClient(server.http)
    for name, (_, _, backend) in models.items():
        assert client.is_model_ready(name), server.failures()
        config = client.get_model_config(name)
        assert config["backend"] == backend and config["max_batch_size"] == MAX_BATCH
        assert config["input"][0]["dims"] == [1, 8, 8] and config["output"][0]["dims"] == [10]
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == DELAY_US
        assert [group["kind"] for group in config["instance_group"]] == ["KIND_CPU"]


def test_answers_over_http_and_grpc_equal_onebyones_and_metrics_count_them(served, rng):
    from prometheus_client.parser import text_string_to_metric_families

    server, models = served
    x = rng.uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)
    http_client = triton_http.InferenceServerClient(server.http)
    grpc_client = triton_grpc.InferenceServerClient(server.grpc)
    for name, (artifact, engine, _) in models.items():
        with onebyone.open(artifact, engine) as session:
            expected = session.run(x)["logits"]
        for triton, client in ((triton_http, http_client), (triton_grpc, grpc_client)):
            tensor = triton.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            got = client.infer(name, [tensor]).as_numpy("logits")
            assert got.dtype == np.float32 and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected, err_msg=f"{name} over {triton.__name__}")
    grpc_client.close()
    host, port = server.metrics.split(":")
    import http.client

    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    successes = {sample.labels["model"]: sample.value for family in text_string_to_metric_families(text)
                 if family.name == "nv_inference_request_success" for sample in family.samples}
    assert {name: successes.get(name) for name in models} == dict.fromkeys(models, 2.0)


def test_a_repository_triton_refuses_fails_with_tritons_own_message(served, bundle_copy, tmp_path):
    """The default repository is KIND_GPU (the deployment target); this CPU-only Triton refuses to load it."""
    from onebyone.runtime.commands.main import main

    assert main(["triton-repo", str(bundle_copy("digits_resnet")), "-o", str(tmp_path / "gpu")]) == 0
    with pytest.raises(RuntimeError, match="tritonserver exited") as refused, \
            TritonServer([tmp_path / "gpu"], tmp_path, (free_port(), free_port(), free_port())):
        pass
    assert "digits_resnet" in str(refused.value) and "GPU" in str(refused.value), str(refused.value)
