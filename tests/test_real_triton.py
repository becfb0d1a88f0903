"""Repositories written by `onebyone triton-repo`, loaded by a real tritonserver (2.51, CPU, Python backend; see
bench/tritonserver.py): the FP32 file and both INT8 flavours on the onnxruntime and openvino backends (Python-based
stand-ins, which this Triton build needs, that build their sessions from the config as those backends do:
bench/triton_stand_in.py), and a `--backend python` one (onebyone inside Triton), all with `--instance-kind cpu`.
Every model loads and is READY; its config as Triton reports it is what onebyone wrote; answers over HTTP and gRPC
match each file's exact Q/DQ math (the python backend: onebyone's in-process session, bit for bit); and Triton's
/metrics counts them. A repository Triton refuses fails the test with Triton's own message."""

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
    """tritonserver with repositories of digits_resnet: the FP32 file and both INT8 flavours on the onnxruntime and
    openvino backends (stand-ins that configure their sessions as those backends do: bench/triton_stand_in.py) and
    the `ort` INT8 file on the python backend (onebyone inside Triton); yields (server, {model: (artifact, backend)},
    refusals: {model: triton-repo's message})."""
    from onebyone.runtime.commands.main import main

    tritonserver_or_skip()
    bundle = bundle_copy("digits_resnet")
    work = tmp_path_factory.mktemp("triton")
    for flavour in ("ort", "trt"):
        assert main(["quantize", str(bundle / "model.onnx"), "--precision", "int8", "--calib", "digits",
                     "--flavour", flavour]) == 0
    common = ["--instance-kind", "cpu", "--max-batch", str(MAX_BATCH), "--max-delay-ms", str(DELAY_US / 1000)]
    files = {"digits_resnet": bundle / "model.onnx", "digits_resnet.int8-trt": bundle / "model.int8-trt.onnx",
             "digits_resnet.int8-ort": bundle / "model.int8-ort.onnx"}
    backends = {"onnxruntime": files, "python": {"digits_resnet.int8-ort": files["digits_resnet.int8-ort"]}}
    if importlib.util.find_spec("openvino") is not None:
        backends["openvino"] = files
    models, refusals = {}, {}
    for backend, chosen in backends.items():
        for name, artifact in chosen.items():
            target = str(bundle) if artifact.name == "model.onnx" else str(artifact)
            repository = work / backend / name
            code = main(["triton-repo", target, "-o", str(repository), "--backend", backend, *common])
            if code == 2:  # refused: the backend computes this file wrongly on this CPU (kernel check)
                refusals[f"{name}.{backend}"] = artifact
                continue
            assert code == 0
            served_as = work / backend / f"{name}.{backend}"  # one name space for the server
            (repository / name).rename(served_as)
            repository.rmdir()
            config = served_as / "config.pbtxt"
            config.write_text(config.read_text().replace(f'name: "{name}"', f'name: "{name}.{backend}"', 1))
            models[f"{name}.{backend}"] = (artifact, backend)
    with TritonServer([work / backend for backend in backends], work,
                      (free_port(), free_port(), free_port())) as server:
        yield server, models, refusals


def test_every_model_loads_with_the_config_onebyone_wrote(served):
    server, models, _ = served
    client = triton_http.InferenceServerClient(server.http)
    for name, (_, backend) in models.items():
        assert client.is_model_ready(name), server.failures()
        config = client.get_model_config(name)
        assert config["backend"] == backend and config["max_batch_size"] == MAX_BATCH
        assert config["input"][0]["dims"] == [1, 8, 8] and config["output"][0]["dims"] == [10]
        assert config["dynamic_batching"]["max_queue_delay_microseconds"] == DELAY_US
        assert [group["kind"] for group in config["instance_group"]] == ["KIND_CPU"]


def test_tritons_backends_compute_what_each_file_states(served, rng):
    """Over HTTP and gRPC, each stand-in backend's answers against the file's exact Q/DQ math (ONNX Runtime,
    optimizations off), held to the int8-kernel bounds (FP32: the fp32 row); the python backend's equal onebyone's
    in-process session bit for bit; and Triton's /metrics counts every answer. A file triton-repo refused for a
    backend is one whose kernel check on this CPU failed there, and it says so."""
    from prometheus_client.parser import text_string_to_metric_families

    from onebyone.runtime.bundle.tolerances import TOLERANCES
    from onebyone.runtime.parity.kernel_check import exact_outputs
    from onebyone.runtime.parity.metrics import compare

    server, models, refusals = served
    x = rng.uniform(-1, 1, (6, 1, 8, 8)).astype(np.float32)
    http_client = triton_http.InferenceServerClient(server.http)
    grpc_client = triton_grpc.InferenceServerClient(server.grpc)
    for name, (artifact, backend) in models.items():
        if backend == "python":
            with onebyone.open(artifact, "auto") as session:
                expected = session.run(x)["logits"]
        else:
            expected = exact_outputs(artifact, {"input": x})["logits"]
        tolerance = TOLERANCES["fp32" if artifact.name == "model.onnx" else "int8-kernel"].golden()
        for triton, client in ((triton_http, http_client), (triton_grpc, grpc_client)):
            tensor = triton.InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            got = client.infer(name, [tensor]).as_numpy("logits")
            assert got.dtype == np.float32 and got.shape == expected.shape
            if backend == "python":
                np.testing.assert_array_equal(got, expected, err_msg=f"{name} over {triton.__name__}")
            else:
                parity = compare({"logits": expected}, {"logits": got}, tolerance)
                assert parity.ok, f"{name} over {triton.__name__}: {parity.describe()}"
    grpc_client.close()
    host, port = server.metrics.split(":")
    import http.client

    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    successes = {sample.labels["model"]: sample.value for family in text_string_to_metric_families(text)
                 if family.name == "nv_inference_request_success" for sample in family.samples}
    assert {name: successes.get(name) for name in models} == dict.fromkeys(models, 2.0)
    for name, artifact in refusals.items():
        from onebyone.runtime.bundle.manifest import read_manifest
        from onebyone.runtime.core.cpu import this_cpu

        backend = name.rsplit(".", 1)[1]
        record = read_manifest(artifact.parent).artifacts[artifact.name]
        assert not record.kernel_checks[this_cpu().cpu_class][backend]["ok"], f"{name} refused without cause"


def test_a_repository_triton_refuses_fails_with_tritons_own_message(served, bundle_copy, tmp_path):
    """The default repository is KIND_GPU (the deployment target); this CPU-only Triton refuses to load it."""
    from onebyone.runtime.commands.main import main

    assert main(["triton-repo", str(bundle_copy("digits_resnet")), "-o", str(tmp_path / "gpu")]) == 0
    with pytest.raises(RuntimeError, match="tritonserver exited") as refused, \
            TritonServer([tmp_path / "gpu"], tmp_path, (free_port(), free_port(), free_port())):
        pass
    assert "digits_resnet" in str(refused.value) and "GPU" in str(refused.value), str(refused.value)
