"""`onebyone serve` through the real tritonclient: health, metadata, config, statistics, inference with binary and
JSON tensors, errors with Triton's status codes, dynamic batching under 32 concurrent clients without mix-ups,
not-ready models and graceful shutdown (the fuzz of malformed requests: tests/test_serve_fuzz.py)."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
import tritonclient.http as triton
from onnx import helper
from tritonclient.utils import InferenceServerException

import onebyone.runtime.sessions.opening as sessions
from onebyone.runtime.bundle.golden import Golden
from onebyone.runtime.bundle.manifest import GOLDEN_NAME
from onebyone.runtime.serve.server import create_app, load_models
from tests.graphs import model as onnx_model
from tests.graphs import tensor_input
from tests.serving import BackgroundServer

MAX_BATCH = 32
CLIENTS = 32
BATCH_TOLERANCE = 1e-5  # a sample's outputs batched with others vs alone: max|diff| ≤ 1e-5 · max|alone|


def two_output_model(path: Path, rng: np.random.Generator) -> None:
    """y1 = x·W1, y2 = relu(x·W2) on a dynamic batch of 4-vectors: a model with two outputs."""
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["y1"]), helper.make_node("MatMul", ["x", "w2"], ["h"]),
             helper.make_node("Relu", ["h"], ["y2"])]
    ir.save(onnx_model(nodes, [tensor_input("x", ["N", 4])], ["y1", "y2"],
                       {"w1": rng.normal(size=(4, 3)), "w2": rng.normal(size=(4, 5))}), path)


@pytest.fixture(scope="module", params=["auto", "openvino"])
def served(request, bundle_copy, tmp_path_factory):
    """A server with digits_resnet (dynamic batching) and a two-output ONNX on ONNX Runtime (auto) or on OpenVINO
    (`serve --backend openvino`); yields (url, bundle, two_output). Every test below runs against both."""
    if request.param == "openvino":
        pytest.importorskip("openvino", reason="the openvino extra is not installed")
    bundle = bundle_copy("digits_resnet")
    two_output = tmp_path_factory.mktemp("serve") / "two_output.onnx"
    two_output_model(two_output, np.random.default_rng(0))
    entries = load_models([bundle, two_output], request.param, None, MAX_BATCH, 0.005)
    with BackgroundServer(create_app(entries, 1 << 20, 5000)) as server:
        yield server.url, bundle, two_output


@pytest.fixture
def client(served):
    return triton.InferenceServerClient(served[0], concurrency=1)


def digits_input(x: np.ndarray, binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    return tensor


def test_health_and_metadata(client, request):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits_resnet") and client.is_model_ready("digits_resnet", "1")
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification", "model_configuration",
                                                         "statistics"]
    metadata = client.get_model_metadata("digits_resnet")
    platform = {"auto": "onnxruntime_onnx", "openvino": "openvino"}[request.node.callspec.params["served"]]
    assert metadata["platform"] == platform and metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    assert metadata["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]
    config = client.get_model_config("digits_resnet")
    assert config["max_batch_size"] == MAX_BATCH and config["input"][0]["dims"] == [1, 8, 8]
    assert config["output"] == [{"name": "logits", "data_type": "TYPE_FP32", "dims": [10],
                                 "label_filename": "labels.txt"}]  # the bundle has class labels
    assert config["dynamic_batching"] == {"max_queue_delay_microseconds": 5000}


@pytest.mark.parametrize(("binary_in", "binary_out"), [(True, True), (False, False), (True, False), (False, True)])
def test_inference_equals_the_in_process_session(served, client, rng, binary_in, binary_out):
    _, bundle, _ = served
    x = rng.uniform(-1, 1, (3, 1, 8, 8)).astype(np.float32)
    result = client.infer("digits_resnet", [digits_input(x, binary_in)], request_id=f"req-{binary_in}-{binary_out}",
                          outputs=[triton.InferRequestedOutput("logits", binary_data=binary_out)])
    assert result.get_response()["id"] == f"req-{binary_in}-{binary_out}"
    encoded = result.get_response()["outputs"][0]
    assert ("parameters" in encoded) == binary_out and ("data" in encoded) == (not binary_out)
    with sessions.open(bundle) as session:
        expected = session.run(x)["logits"]
    got = result.as_numpy("logits")
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=BATCH_TOLERANCE * np.abs(expected).max())


def test_only_requested_outputs_are_returned(served, client, rng):
    _, _, path = served
    x = rng.normal(size=(2, 4)).astype(np.float32)
    tensor = triton.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("two_output", [tensor], outputs=[triton.InferRequestedOutput("y2")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["y2"] and result.as_numpy("y1") is None
    with sessions.open(path) as session:
        np.testing.assert_allclose(result.as_numpy("y2"), session.run(x)["y2"], rtol=1e-6, atol=1e-6)
    both = client.infer("two_output", [tensor])  # nothing requested: every output, binary
    assert {o["name"] for o in both.get_response()["outputs"]} == {"y1", "y2"}


@pytest.mark.parametrize(("make_request", "status", "message"), [
    (lambda x: ("nope", [digits_input(x)]), 404, "unknown model 'nope'"),
    (lambda x: ("digits_resnet", [triton.InferInput("image", list(x.shape), "FP32")]), 400,
     "unknown input(s) ['image']"),
    (lambda x: ("digits_resnet", [digits_input(x[:, :, :4])]), 400, "has shape [2, 1, 4, 8]; the model takes"),
    (lambda x: ("digits_resnet", [digits_input(x[0])]), 400, "has rank 3"),
    (lambda x: ("digits_resnet", [digits_input(np.zeros((MAX_BATCH + 1, 1, 8, 8), np.float32))]), 400,
     f"batch {MAX_BATCH + 1} exceeds the model's max_batch_size {MAX_BATCH}"),
])
def test_errors_carry_triton_status_codes(client, rng, make_request, status, message):
    x = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    name, inputs = make_request(x)
    if inputs[0].name() == "image":
        inputs[0].set_data_from_numpy(x)
    with pytest.raises(InferenceServerException) as error:
        client.infer(name, inputs)
    assert error.value.status() == str(status) and message in error.value.message()


def test_wrong_dtype_is_a_bad_request(client):
    tensor = triton.InferInput("input", [1, 1, 8, 8], "FP64")
    tensor.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float64))
    with pytest.raises(InferenceServerException) as error:
        client.infer("digits_resnet", [tensor])
    assert error.value.status() == "400"
    assert "input 'input' is float64; the model takes float32" in error.value.message()


def statistics(client) -> dict:
    return client.get_inference_statistics("digits_resnet")["model_stats"][0]


def test_concurrent_clients_are_batched_without_mix_ups(served, rng):
    url, bundle, _ = served
    inputs = [rng.uniform(-1, 1, (1 + i % 3, 1, 8, 8)).astype(np.float32) for i in range(CLIENTS * 4)]
    with sessions.open(bundle) as session:
        expected = [session.run(x)["logits"] for x in inputs]  # each alone, in process
    stats_client = triton.InferenceServerClient(url)
    before = statistics(stats_client)
    start = threading.Barrier(CLIENTS)

    def client_work(index: int) -> list[tuple[int, np.ndarray]]:
        own = triton.InferenceServerClient(url)
        start.wait()
        return [(i, own.infer("digits_resnet", [digits_input(inputs[i])]).as_numpy("logits"))
                for i in range(index, len(inputs), CLIENTS)]

    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        results = [item for chunk in pool.map(client_work, range(CLIENTS)) for item in chunk]
    assert sorted(i for i, _ in results) == list(range(len(inputs)))
    for i, got in results:
        assert got.shape == expected[i].shape
        assert np.abs(got - expected[i]).max() <= BATCH_TOLERANCE * np.abs(expected[i]).max(), f"request {i}"
    after = statistics(stats_client)
    requests = after["inference_stats"]["success"]["count"] - before["inference_stats"]["success"]["count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == len(inputs) and after["inference_count"] - before["inference_count"] == \
        sum(len(x) for x in inputs)
    assert executions < requests, f"{requests} requests ran in {executions} executions: nothing was batched"
    earlier = {s["batch_size"]: s["compute_infer"]["count"] for s in before["batch_stats"]}
    formed = [s["batch_size"] for s in after["batch_stats"]
              if s["compute_infer"]["count"] > earlier.get(s["batch_size"], 0)]
    assert max(formed) > 3, formed  # larger than any single request (1..3 samples)
    print(f"{requests} requests in {executions} executions; batch sizes {after['batch_stats']}")


def test_a_model_failing_its_self_check_never_becomes_ready(bundle_copy):
    bundle = bundle_copy("digits_resnet")
    golden = Golden.load(bundle / GOLDEN_NAME)
    Golden(golden.inputs, {k: v + 1 for k, v in golden.outputs.items()}).save(bundle / GOLDEN_NAME)
    with BackgroundServer(create_app(load_models([bundle], "auto", None, 8, None), 1 << 20, None)) as server:
        client = triton.InferenceServerClient(server.url)
        assert client.is_server_live() and not client.is_server_ready()
        assert not client.is_model_ready("digits_resnet")
        with pytest.raises(InferenceServerException) as error:
            client.infer("digits_resnet", [digits_input(np.zeros((1, 1, 8, 8), np.float32))])
        assert error.value.status() == "503" and "fails its self-check" in error.value.message()


def test_shutdown_drains_in_flight_requests(bundle_copy):
    entries = load_models([bundle_copy("digits_resnet")], "auto", None, 8, None)
    session = entries["digits_resnet"].session
    slow_run = session.run
    running = threading.Event()

    def slow(inputs: dict, outputs: list | None = None) -> dict:
        running.set()
        time.sleep(0.3)
        return slow_run(inputs, outputs)

    session.run = slow
    server = BackgroundServer(create_app(entries, 1 << 20, None)).__enter__()
    x = np.zeros((1, 1, 8, 8), np.float32)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(lambda: triton.InferenceServerClient(server.url).infer("digits_resnet",
                                                                                      [digits_input(x)]))
                   for _ in range(4)]
        assert running.wait(30), "no request reached the model"
        time.sleep(0.1)  # the first request is running; the others, sent with it, are in the server
        server.__exit__(None, None, None)
        results = [future.result(timeout=30).as_numpy("logits") for future in futures]
    assert all(r.shape == (1, 10) and np.isfinite(r).all() for r in results)


def test_the_docs_snippet_works_against_the_server(served, capsys):
    readme = (Path(__file__).resolve().parent.parent / "docs" / "serve.md").read_text()
    snippet = readme.split("```python\nimport numpy as np\nimport tritonclient.http as triton\n", 1)[1]
    snippet = "import numpy as np\nimport tritonclient.http as triton\n" + snippet.split("```", 1)[0]
    assert '"127.0.0.1:8000"' in snippet
    exec(snippet.replace('"127.0.0.1:8000"', repr(served[0])), {})
    printed = capsys.readouterr().out.strip()
    with sessions.open(served[1]) as session:
        expected = session.run(np.zeros((2, 1, 8, 8), np.float32))["logits"].argmax(axis=1)
    assert printed == str(expected)


@pytest.mark.parametrize(("args", "message"), [
    (["missing.onnx"], "missing.onnx does not exist"),
    (["digits_resnet", "--max-delay-ms", "-1"], "argument --max-delay-ms: '-1' is not a number ≥ 0"),
])
def test_serve_user_errors_exit_2_before_listening(cli, args, message):
    code, _, err = cli("serve", *args)
    assert code == 2 and message in err and "Traceback" not in err
