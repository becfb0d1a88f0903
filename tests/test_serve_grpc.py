"""`onebyone serve` over gRPC, through tritonclient's own gRPC client (sync and async_infer): metadata, config,
statistics and inference equal to the in-process session, Triton's status codes, the docs snippet, and statistics
shared with HTTP."""

from __future__ import annotations

import logging
import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

import onebyone.runtime.sessions.opening as sessions
from onebyone.runtime.serve.server import create_app, load_models
from tests.helpers import REPO
from tests.serving import BackgroundServer

MAX_BATCH = 8


@pytest.fixture(scope="module")
def served(bundle_copy):
    bundle = bundle_copy("digits_resnet")
    entries = load_models([bundle], "auto", None, MAX_BATCH, 0.002)
    with BackgroundServer(create_app(entries, 1 << 20, 2000)) as server:
        yield server, bundle


@pytest.fixture
def client(served):
    return triton_grpc.InferenceServerClient(served[0].grpc_url)


def grpc_input(x: np.ndarray) -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return tensor


def test_health_metadata_and_config(client):
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("digits_resnet")
    assert "classification" in client.get_server_metadata().extensions
    metadata = client.get_model_metadata("digits_resnet", as_json=True)
    assert metadata["platform"] == "onnxruntime_onnx" and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": ["-1", "1", "8", "8"]}]
    config = client.get_model_config("digits_resnet").config
    assert config.max_batch_size == MAX_BATCH and list(config.input[0].dims) == [1, 8, 8]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000


def test_inference_equals_the_in_process_session(served, client, rng):
    x = rng.uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)
    result = client.infer("digits_resnet", [grpc_input(x)], request_id="r1")
    with sessions.open(served[1]) as session:
        expected = session.run(x)["logits"]
    np.testing.assert_allclose(result.as_numpy("logits"), expected, rtol=1e-6, atol=1e-6)
    assert result.get_response().id == "r1"
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceStub

    request = pb.ModelInferRequest(model_name="digits_resnet")  # typed contents instead of raw bytes
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape)).contents.fp32_contents.extend(x.ravel())
    with grpc.insecure_channel(served[0].grpc_url) as channel:
        response = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=30)
    assert response.outputs[0].name == "logits" and list(response.outputs[0].shape) == [3, 10]
    typed = np.frombuffer(response.raw_output_contents[0], np.float32).reshape(3, 10)
    np.testing.assert_allclose(typed, expected, rtol=1e-6, atol=1e-6)


def test_async_infer_and_classification(served, client, rng):
    x = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    answers: queue.Queue = queue.Queue()
    client.async_infer("digits_resnet", [grpc_input(x)], lambda result, error: answers.put((result, error)),
                       outputs=[triton_grpc.InferRequestedOutput("logits", class_count=2)])
    result, error = answers.get(timeout=30)
    assert error is None
    rows = result.as_numpy("logits")
    with sessions.open(served[1]) as session:
        logits = session.run(x)["logits"]
    assert rows.shape == (2, 2)
    top = np.argsort(-logits, axis=1, kind="stable")[:, :2].tolist()
    assert [[item.decode().split(":")[1:] for item in row] for row in rows] == \
        [[[str(index), str(index)] for index in classes] for classes in top]  # digits' labels are their digits


@pytest.mark.parametrize(("make", "code", "message"), [
    (lambda c, x: c.infer("nope", [grpc_input(x)]), "StatusCode.NOT_FOUND", "unknown model 'nope'"),
    (lambda c, x: c.infer("digits_resnet", [grpc_input(x[:, :, :4])]), "StatusCode.INVALID_ARGUMENT",
     "the model takes"),
    (lambda c, x: c.infer("digits_resnet", [grpc_input(np.zeros((MAX_BATCH + 1, 1, 8, 8), np.float32))]),
     "StatusCode.INVALID_ARGUMENT", f"exceeds the model's max_batch_size {MAX_BATCH}"),
    (lambda c, x: c.get_model_metadata("digits_resnet", "7"), "StatusCode.NOT_FOUND", "has no version '7'"),
])
def test_errors_carry_tritons_status_codes(client, rng, make, code, message):
    x = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    with pytest.raises(InferenceServerException) as error:
        make(client, x)
    assert error.value.status() == code and message in error.value.message()


def test_http_and_grpc_report_the_same_statistics(served, client):
    http = triton_http.InferenceServerClient(served[0].url)
    client.infer("digits_resnet", [grpc_input(np.zeros((1, 1, 8, 8), np.float32))])
    over_grpc = client.get_inference_statistics("digits_resnet", as_json=True)["model_stats"][0]
    over_http = http.get_inference_statistics("digits_resnet")["model_stats"][0]
    for field in ("inference_count", "execution_count"):
        assert int(over_grpc[field]) == int(over_http[field]) > 0
    assert int(over_grpc["inference_stats"]["success"]["count"]) == over_http["inference_stats"]["success"]["count"]


def test_the_docs_grpc_snippet_works_against_the_server(served, capsys):
    text = (REPO / "docs" / "serve.md").read_text()
    snippet = text.split("```python\nimport numpy as np\nimport tritonclient.grpc as triton\n", 1)[1]
    snippet = "import numpy as np\nimport tritonclient.grpc as triton\n" + snippet.split("```", 1)[0]
    assert '"127.0.0.1:8001"' in snippet
    exec(snippet.replace('"127.0.0.1:8001"', repr(served[0].grpc_url)), {})
    with sessions.open(served[1]) as session:
        expected = session.run(np.zeros((2, 1, 8, 8), np.float32))["logits"].argmax(axis=1)
    assert capsys.readouterr().out.strip() == str(expected)


def raw_model_infer(served, body: bytes) -> grpc.RpcError:
    """Send `body` as the ModelInfer request's bytes, as a client with another protobuf library might."""
    with grpc.insecure_channel(served[0].grpc_url) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        with pytest.raises(grpc.RpcError) as error:
            call(body, timeout=30)
    return error.value


@pytest.mark.parametrize(("datatype", "field", "value"), [
    ("INT8", "int_contents", 300), ("INT8", "int_contents", -200), ("UINT8", "uint_contents", 300),
    ("INT16", "int_contents", 40000), ("UINT16", "uint_contents", 70000),
])
def test_typed_contents_out_of_their_datatype_are_invalid_arguments(served, datatype, field, value):
    request = triton_grpc.service_pb2.ModelInferRequest(model_name="digits_resnet")
    tensor = request.inputs.add(name="input", datatype=datatype, shape=[1])
    getattr(tensor.contents, field).append(value)
    error = raw_model_infer(served, request.SerializeToString())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and f"out of {datatype}'s range" in error.details()


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x0a\x05abc", bytes(range(256))])
def test_a_request_that_is_not_protobuf_is_an_invalid_argument(served, client, body):
    error = raw_model_infer(served, body)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a ModelInferRequest" in error.details()
    assert client.is_server_live()


def test_raw_and_typed_contents_together_are_an_invalid_argument(served, rng):
    """Triton refuses an input given twice; onebyone once used the raw bytes and ignored the typed ones."""
    x = rng.uniform(-1, 1, (1, 1, 8, 8)).astype(np.float32)
    request = triton_grpc.service_pb2.ModelInferRequest(model_name="digits_resnet")
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape)).contents.fp32_contents.extend(x.ravel())
    request.raw_input_contents.append(x.tobytes())
    error = raw_model_infer(served, request.SerializeToString())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "both raw_input_contents and typed contents" in error.details()


UNIMPLEMENTED = ["RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload", "SystemSharedMemoryStatus",
                 "SystemSharedMemoryRegister", "SystemSharedMemoryUnregister", "CudaSharedMemoryStatus",
                 "CudaSharedMemoryRegister", "CudaSharedMemoryUnregister", "TraceSetting", "LogSettings"]


def test_unimplemented_methods_answer_in_one_line_and_log_once(served, caplog):
    """Every method onebyone does not serve answers UNIMPLEMENTED naming itself, as many times as a client asks,
    and the log gets at most one line per method — never a traceback (a client could flood it)."""
    pb = triton_grpc.service_pb2
    caplog.set_level(logging.DEBUG)
    with grpc.insecure_channel(served[0].grpc_url) as channel:
        for method in UNIMPLEMENTED:
            call = channel.unary_unary(f"/inference.GRPCInferenceService/{method}",
                                       response_deserializer=pb.ServerLiveResponse.FromString)
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as error:
                    call(b"", timeout=30)
                assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
                assert error.value.details() == f"{method} is not implemented by onebyone serve"
        stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        with pytest.raises(grpc.RpcError) as error:
            list(stream(iter([pb.ModelInferRequest(model_name="digits_resnet").SerializeToString()]), timeout=30))
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    for method in [*UNIMPLEMENTED, "ModelStreamInfer"]:
        assert sum(method in r.getMessage() for r in caplog.records) <= 1, method


def test_an_unregistered_shared_memory_region_is_an_invalid_argument(served, rng):
    """The server registers no shared memory, so a region a request names cannot exist (Triton's answer); onebyone
    once ignored it and sent the output inline."""
    x = rng.uniform(-1, 1, (1, 1, 8, 8)).astype(np.float32)
    request = triton_grpc.service_pb2.ModelInferRequest(model_name="digits_resnet")
    request.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    request.raw_input_contents.append(x.tobytes())
    request.outputs.add(name="logits").parameters["shared_memory_region"].string_param = "r0"
    error = raw_model_infer(served, request.SerializeToString())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "shared memory region 'r0' is not registered" in error.details()
