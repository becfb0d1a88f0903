"""The server at the edges of the protocol, one test per defect found from outside: requests that used to get a 500,
non-finite outputs as valid JSON, `outputs: []`, non-bool `binary_data`, HTTP-level errors as JSON, 405's `Allow`,
`Expect: 100-continue` over the limit, a client resetting mid-body, gzip, and Triton's classification extension."""

from __future__ import annotations

import gzip
import http.client
import json
import logging
import socket
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
import tritonclient.http as triton
from onnx import helper

import onebyone.runtime.sessions.opening as sessions
from bench.serve import free_port
from onebyone.runtime.bundle.manifest import read_manifest
from onebyone.runtime.serve.server import create_app, load_models
from tests.graphs import model as onnx_model
from tests.graphs import tensor_input
from tests.helpers import REPO
from tests.serving import BackgroundServer

LIMIT = 1 << 20


def log_model(path: Path) -> None:
    """y = log(x) on a dynamic batch of 4-vectors: NaN for x < 0, -inf for x = 0."""
    ir.save(onnx_model([helper.make_node("Log", ["x"], ["y"])], [tensor_input("x", ["N", 4])], ["y"], {}), path)


@pytest.fixture(scope="module")
def server(bundle_copy, tmp_path_factory):
    """digits_resnet (batching) and the log model, behind one server; yields (url, bundle)."""
    bundle = bundle_copy("digits_resnet")
    log = tmp_path_factory.mktemp("edges") / "log.onnx"
    log_model(log)
    entries = load_models([bundle, log], "auto", None, 8, 0.001)
    with BackgroundServer(create_app(entries, LIMIT, 1000)) as background:
        yield background.url, bundle


def post(url: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    host, port = url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.request("POST", path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), data


def infer_json(url: str, header: dict, model: str = "digits_resnet") -> tuple[int, dict]:
    status, _, body = post(url, f"/v2/models/{model}/infer", json.dumps(header).encode())
    return status, json.loads(body)


def digits_request(**tensor: object) -> dict:
    base = {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": [0.0] * 64}
    return {"inputs": [base | tensor]}


@pytest.mark.parametrize(("body", "message"), [
    (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    (json.dumps(digits_request(shape=[1] * 70)).encode(), "has 70 dimensions"),
    (json.dumps(digits_request(shape=[0, 2**62, 2**62], data=[])).encode(), "too large"),
    (json.dumps(digits_request(datatype=["FP32"])).encode(), "unsupported datatype ['FP32']"),
    (json.dumps(digits_request(datatype={"a": 1})).encode(), "unsupported datatype"),
    (json.dumps(digits_request(name=["input"])).encode(), "string name"),
])
def test_requests_that_got_a_500_get_a_json_400(server, caplog, body, message):
    with caplog.at_level(logging.ERROR, logger="onebyone.serve"):
        status, headers, data = post(server[0], "/v2/models/digits_resnet/infer", body)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert message in json.loads(data)["error"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback for a client's mistake"


def test_non_finite_outputs_are_valid_json_that_clients_read(server):
    x = np.array([[-1.0, 0.0, 1.0, np.e]], np.float32)
    header = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
    status, _, body = post(server[0], "/v2/models/log/infer", json.dumps(header).encode())
    assert status == 200
    text = body.decode()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    client = triton.InferenceServerClient(server[0])
    tensor = triton.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(x, binary_data=False)
    got = client.infer("log", [tensor], outputs=[triton.InferRequestedOutput("y", binary_data=False)]).as_numpy("y")
    assert np.isnan(got[0, 0]) and np.isnan(got[0, 1])  # JSON has no ±inf: null, read back as NaN
    np.testing.assert_allclose(got[0, 2:], [0.0, 1.0], atol=1e-6)
    binary = client.infer("log", [tensor]).as_numpy("y")  # binary outputs keep every value exactly
    assert np.isnan(binary[0, 0]) and binary[0, 1] == -np.inf


def test_an_empty_outputs_list_means_every_output(server):
    status, body = infer_json(server[0], digits_request() | {"outputs": []})
    assert status == 200 and [o["name"] for o in body["outputs"]] == ["logits"]


@pytest.mark.parametrize("value", ["yes", 1, None, [True]])
def test_binary_data_must_be_a_bool(server, value):
    header = digits_request() | {"outputs": [{"name": "logits", "parameters": {"binary_data": value}}]}
    status, body = infer_json(server[0], header)
    assert status == 400 and "binary_data must be true or false" in body["error"]
    status, body = infer_json(server[0], digits_request() | {"parameters": {"binary_data_output": value}})
    assert status == 400 and "binary_data_output must be true or false" in body["error"]


def raw_exchange(url: str, request: bytes) -> bytes:
    host, port = url.split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        chunks = []
        while True:
            chunk = connection.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
            if b"\r\n\r\n" in b"".join(chunks) and not request.startswith(b"POST"):
                break
    return b"".join(chunks)


def test_http_level_errors_are_json(server):
    huge = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n"
    bad_length = b"POST /v2/models/digits_resnet/infer HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"
    for request in (huge, bad_length):
        answer = raw_exchange(server[0], request)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ")[1].startswith(b"4"), head
        assert b"application/json" in head.lower(), head
        assert "error" in json.loads(body.split(b"\r\n0\r\n")[0] or b"{}")


def test_wrong_method_names_the_allowed_ones(server):
    host, port = server[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/v2/models/digits_resnet/infer")
    response = connection.getresponse()
    body = json.loads(response.read())
    assert response.status == 405 and response.getheader("Allow") == "POST" and "error" in body


def test_expect_continue_over_the_limit_is_refused_before_the_body(server):
    request = (b"POST /v2/models/digits_resnet/infer HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: " + str(LIMIT * 4).encode() + b"\r\n\r\n")
    host, port = server[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        first = connection.recv(65536)
    assert first.startswith(b"HTTP/1.1 413"), first[:80]
    assert b"100 Continue" not in first


def test_a_client_resetting_mid_body_is_no_internal_error(server, caplog):
    host, port = server[0].split(":")
    with caplog.at_level(logging.DEBUG, logger="onebyone.serve"):
        connection = socket.create_connection((host, int(port)), timeout=30)
        connection.sendall(b"POST /v2/models/digits_resnet/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                           b"\r\n" + b"{" * 1000)
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        connection.close()  # RST
        status, _ = infer_json(server[0], digits_request())  # the server carries on
    assert status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def test_responses_are_gzipped_when_the_client_accepts_it(server):
    status, headers, body = post(server[0], "/v2/models/digits_resnet/infer", json.dumps(digits_request()).encode(),
                                 {"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert json.loads(gzip.decompress(body))["outputs"][0]["name"] == "logits"


def test_classification_returns_triton_top_k_strings(server, rng):
    x = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    client = triton.InferenceServerClient(server[0])
    tensor = triton.InferInput("input", [2, 1, 8, 8], "FP32")
    tensor.set_data_from_numpy(x)
    for binary in (True, False):
        wanted = triton.InferRequestedOutput("logits", binary_data=binary, class_count=3)
        result = client.infer("digits_resnet", [tensor], outputs=[wanted])
        rows = result.as_numpy("logits")
        assert rows.shape == (2, 3)
        with sessions.open(server[1]) as session:
            logits = session.run(x)["logits"]
        labels = read_manifest(server[1]).model.labels
        for row, scores in zip(rows, logits, strict=True):  # "value:index:label", the label from the bundle
            entries = [(item.decode() if isinstance(item, bytes) else item).split(":") for item in row]
            assert [int(index) for _, index, _ in entries] == list(np.argsort(-scores, kind="stable")[:3])
            assert [label for _, index, label in entries] == [labels[int(index)] for _, index, _ in entries]
            np.testing.assert_allclose([float(value) for value, _, _ in entries], np.sort(scores)[::-1][:3],
                                       rtol=1e-5)
    status, body = infer_json(server[0], digits_request() | {
        "outputs": [{"name": "logits", "parameters": {"classification": 0}}]})
    assert status == 400 and "classification" in body["error"]


# --- Triton's statistics and Prometheus metrics ----------------------------------------------------------------

def scrape(url: str) -> dict[tuple[str, ...], float]:
    """/metrics parsed by prometheus_client's own parser: (metric, model) → value, summed over a failure's reasons,
    and (metric, model, reason) → value for each reason."""
    from prometheus_client.parser import text_string_to_metric_families

    host, port = url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/metrics")
    response = connection.getresponse()
    assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
    text = response.read().decode()
    assert "# TYPE nv_inference_count counter\n" in text and "_total" not in text  # Triton's names, as Triton has them
    values = {}
    gauges = {"nv_inference_pending_request_count"}
    for family in text_string_to_metric_families(text):
        assert family.type == ("gauge" if family.name in gauges else "counter"), family.name
        for sample in family.samples:
            key = (family.name, sample.labels["model"])
            values[key] = values.get(key, 0.0) + sample.value
            if "reason" in sample.labels:
                values[(*key, sample.labels["reason"])] = sample.value
    assert gauges <= {name for name, *_ in values}
    return values


def test_statistics_follow_tritons_schema_and_metrics_move_by_exactly_what_was_sent(server, rng):
    from google.protobuf import json_format
    from tritonclient.grpc import service_pb2

    url = server[0]
    client = triton.InferenceServerClient(url)
    before_stats = client.get_inference_statistics("digits_resnet")["model_stats"][0]
    before = scrape(url)
    good, bad = 5, 3
    for _ in range(good):
        status, _ = infer_json(url, digits_request(data=rng.uniform(-1, 1, 64).tolist()))
        assert status == 200
    for _ in range(bad):
        status, _ = infer_json(url, digits_request(shape=[1, 1, 8, 7]))
        assert status == 400
    after = scrape(url)
    stats = client.get_inference_statistics("digits_resnet")["model_stats"][0]
    parsed = json_format.ParseDict({"model_stats": [stats]}, service_pb2.ModelStatisticsResponse())  # strict: no
    assert parsed.model_stats[0].inference_stats.success.count == stats["inference_stats"]["success"]["count"]

    def moved(metric: str) -> float:
        return after[(metric, "digits_resnet")] - before[(metric, "digits_resnet")]

    assert moved("nv_inference_request_success") == good and moved("nv_inference_request_failure") == bad
    reasons = {reason: after[("nv_inference_request_failure", "digits_resnet", reason)]
               - before[("nv_inference_request_failure", "digits_resnet", reason)]
               for reason in ("REJECTED", "CANCELED", "BACKEND", "OTHER")}
    assert reasons == {"REJECTED": 0, "CANCELED": 0, "BACKEND": 0, "OTHER": bad}  # malformed: refused before a run
    assert after[("nv_inference_pending_request_count", "digits_resnet")] == 0
    assert moved("nv_inference_count") == good and moved("nv_inference_exec_count") == good
    assert moved("nv_inference_request_duration_us") > 0 and moved("nv_inference_compute_infer_duration_us") > 0
    phases = stats["inference_stats"]
    for phase in ("success", "queue", "compute_input", "compute_infer", "compute_output"):
        assert phases[phase]["count"] - before_stats["inference_stats"][phase]["count"] == good, phase
    assert phases["fail"]["count"] - before_stats["inference_stats"]["fail"]["count"] == bad
    assert phases["success"]["ns"] >= phases["compute_infer"]["ns"] > 0
    assert stats["last_inference"] > before_stats["last_inference"]
    assert after[("nv_inference_request_success", "digits_resnet")] == phases["success"]["count"]
    assert sum(b["compute_infer"]["count"] for b in stats["batch_stats"]) == stats["execution_count"]


def test_model_ready_names_the_model(server):
    host, port = server[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/v2/models/digits_resnet/ready")
    assert json.loads(connection.getresponse().read()) == {"name": "digits_resnet", "ready": True}


def test_sigterm_answers_every_request_whose_body_arrives_in_the_drain_window(bundle_copy, tmp_path):
    """SIGTERM while 16 clients are in flight and one is mid-upload: the upload finishes after the signal and is
    answered, every in-flight request is answered, and the process exits well within its 30 s drain bound."""
    import signal
    import subprocess
    import sys

    bundle = bundle_copy("digits_resnet")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "onebyone", "serve", str(bundle), "--port", str(port),
                                "--no-grpc", "--no-batching"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if post(f"127.0.0.1:{port}", "/v2/models/digits_resnet/infer",
                        json.dumps(digits_request()).encode())[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        body = json.dumps(digits_request()).encode()
        upload = socket.create_connection(("127.0.0.1", port), timeout=60)
        upload.sendall(b"POST /v2/models/digits_resnet/infer HTTP/1.1\r\nHost: x\r\nContent-Length: "
                       + str(len(body)).encode() + b"\r\n\r\n" + body[:len(body) // 2])
        statuses: list[int] = []
        stop_sending = threading.Event()

        def keep_sending() -> None:
            while not stop_sending.is_set():
                try:
                    statuses.append(post(f"127.0.0.1:{port}", "/v2/models/digits_resnet/infer", body)[0])
                except OSError:  # refused once the server stopped listening
                    return

        clients = [threading.Thread(target=keep_sending) for _ in range(16)]
        for thread in clients:
            thread.start()
        time.sleep(1.0)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        upload.sendall(body[len(body) // 2:])  # the rest of the body, after the signal
        answer = upload.recv(65536)
        stop_sending.set()
        for thread in clients:
            thread.join(60)
        process.wait(60)
        elapsed = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    assert statuses and set(statuses) == {200}, set(statuses)
    assert elapsed < 10, f"exited {elapsed:.1f} s after SIGTERM"


def test_a_large_json_request_does_not_stall_liveness(bundle_copy):
    """A ~60 MB JSON body is parsed off the event loop: liveness keeps answering within 0.5 s (half a typical
    probe's timeout) the whole time, and the request gets its answer (here a 400: too many samples for the model)."""
    entries = load_models([bundle_copy("digits_resnet")], "auto", None, 8, None)
    rows = 90_000
    header = {"inputs": [{"name": "input", "shape": [rows, 1, 8, 8], "datatype": "FP32",
                          "data": np.random.default_rng(0).uniform(-1, 1, rows * 64).round(6).tolist()}]}
    body = json.dumps(header).encode()
    assert len(body) > 55 << 20
    with BackgroundServer(create_app(entries, 64 << 20, None)) as background:
        latencies: list[float] = []
        done = threading.Event()

        def probe() -> None:
            host, port = background.url.split(":")
            while not done.is_set():
                started = time.perf_counter()
                connection = http.client.HTTPConnection(host, int(port), timeout=30)
                connection.request("GET", "/v2/health/live")
                assert connection.getresponse().status == 200
                connection.close()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.05)

        prober = threading.Thread(target=probe)
        prober.start()
        status, _, answer = post(background.url, "/v2/models/digits_resnet/infer", body)
        done.set()
        prober.join()
    assert status == 400 and "exceeds the model's max_batch_size 8" in json.loads(answer)["error"]
    assert len(latencies) >= 2 and max(latencies) < 0.5, f"liveness took up to {max(latencies):.2f} s"


def test_a_full_queue_answers_503_with_a_retry_hint_and_recovers(bundle_copy):
    """With --max-queue 2 and a slow model, 8 concurrent requests: the ones over the bound get a JSON 503 with
    Retry-After (gRPC: UNAVAILABLE), the admitted ones their answers, and the model serves again afterwards."""
    import concurrent.futures

    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    entries = load_models([bundle_copy("digits_resnet")], "auto", None, 8, None, max_queue=2)
    session = entries["digits_resnet"].session
    fast_run = session.run

    def slow(inputs: dict, outputs: list | None = None) -> dict:
        time.sleep(0.3)
        return fast_run(inputs, outputs)

    session.run = slow
    body = json.dumps(digits_request()).encode()
    with BackgroundServer(create_app(entries, LIMIT, None)) as background:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post(background.url, "/v2/models/digits_resnet/infer", body), range(8)))
        statuses = sorted(status for status, _, _ in answers)
        assert statuses.count(200) >= 2 and set(statuses) == {200, 503}, statuses
        refused = next(a for a in answers if a[0] == 503)
        assert refused[1]["Retry-After"] == "1" and "retry later" in json.loads(refused[2])["error"]
        client = triton_grpc.InferenceServerClient(background.grpc_url)
        tensor = triton_grpc.InferInput("input", [1, 1, 8, 8], "FP32")
        tensor.set_data_from_numpy(np.zeros((1, 1, 8, 8), np.float32))
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda _: _grpc_outcome(client, tensor, InferenceServerException), range(8)))
        assert "StatusCode.UNAVAILABLE" in outcomes and "ok" in outcomes, outcomes
        assert post(background.url, "/v2/models/digits_resnet/infer", body)[0] == 200
        stats = triton.InferenceServerClient(background.url).get_inference_statistics("digits_resnet")
        refused_count = statuses.count(503) + outcomes.count("StatusCode.UNAVAILABLE")
        assert stats["model_stats"][0]["inference_stats"]["fail"]["count"] == refused_count
        assert scrape(background.url)[("nv_inference_request_failure", "digits_resnet", "REJECTED")] == refused_count


def test_the_pending_gauge_counts_requests_admitted_and_not_yet_answered(bundle_copy):
    import concurrent.futures

    entries = load_models([bundle_copy("digits_resnet")], "auto", None, 8, None)
    session = entries["digits_resnet"].session
    fast_run, release = session.run, threading.Event()

    def held(inputs: dict, outputs: list | None = None) -> dict:
        release.wait(30)
        return fast_run(inputs, outputs)

    session.run = held
    body = json.dumps(digits_request()).encode()
    with BackgroundServer(create_app(entries, LIMIT, None)) as background, \
            concurrent.futures.ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(post, background.url, "/v2/models/digits_resnet/infer", body) for _ in range(3)]
        deadline = time.monotonic() + 30
        while scrape(background.url)[("nv_inference_pending_request_count", "digits_resnet")] < 3:
            assert time.monotonic() < deadline, "the gauge never showed the 3 held requests"
            time.sleep(0.05)
        release.set()
        assert [answer.result()[0] for answer in answers] == [200] * 3
        assert scrape(background.url)[("nv_inference_pending_request_count", "digits_resnet")] == 0


def _grpc_outcome(client: object, tensor: object, error_type: type) -> str:
    try:
        client.infer("digits_resnet", [tensor])
    except error_type as err:
        return err.status()
    return "ok"


def test_info_logs_one_json_access_line_per_request(server, caplog):
    with caplog.at_level(logging.INFO, logger="onebyone.serve.access"):
        status, _ = infer_json(server[0], digits_request())
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "onebyone.serve.access"]
    assert status == 200 and len(lines) == 1
    assert lines[0]["method"] == "POST" and lines[0]["path"] == "/v2/models/digits_resnet/infer"
    assert lines[0]["status"] == 200 and lines[0]["ms"] > 0 and lines[0]["bytes_in"] > 0


def test_a_request_timeout_expires_in_the_queue(bundle_copy):
    """Triton's `timeout` parameter (µs): a request still waiting behind a slow run when it expires is answered 503
    (gRPC: UNAVAILABLE) and never runs; one with time to spare is answered."""
    import concurrent.futures

    entries = load_models([bundle_copy("digits_resnet")], "auto", None, 8, None)
    session = entries["digits_resnet"].session
    fast_run, runs = session.run, []

    def slow(inputs: dict, outputs: list | None = None) -> dict:
        runs.append(1)
        time.sleep(0.4)
        return fast_run(inputs, outputs)

    session.run = slow
    with BackgroundServer(create_app(entries, LIMIT, None)) as background:
        url = background.url
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(infer_json, url, digits_request())
            time.sleep(0.1)  # the first is running
            hurried = pool.submit(infer_json, url, digits_request() | {"parameters": {"timeout": 50_000}})
            assert first.result()[0] == 200
            status, body = hurried.result()
        assert status == 503 and "timeout" in body["error"] and len(runs) == 1
        patient = infer_json(url, digits_request() | {"parameters": {"timeout": 5_000_000}})
        assert patient[0] == 200
        status, body = infer_json(url, digits_request() | {"parameters": {"timeout": "soon"}})
        assert status == 400 and "timeout must be" in body["error"]


def test_a_compressed_bomb_is_held_to_the_body_limit(server):
    """aiohttp inflates `Content-Encoding: gzip` bodies; the limit applies to what they inflate to."""
    bomb = gzip.compress(b" " * (LIMIT * 16))
    assert len(bomb) < LIMIT // 8
    status, headers, body = post(server[0], "/v2/models/digits_resnet/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and headers["Content-Type"].startswith("application/json") and "error" in json.loads(body)
    assert infer_json(server[0], digits_request())[0] == 200


def failures(url: str) -> int:
    return triton.InferenceServerClient(url).get_inference_statistics("digits_resnet")["model_stats"][0][
        "inference_stats"]["fail"]["count"]


@pytest.mark.parametrize("length", ["١٢".encode(), "²".encode(), b"1" * 5000, b"+12", b"1_2", b"0x10"])
def test_a_header_length_that_is_no_ascii_integer_is_a_400(server, length):
    """int() takes other scripts' digits, signs and underscores, and refuses more than 4,300 digits: each was a 500
    outside the error handling."""
    before = failures(server[0])
    status, _, body = post(server[0], "/v2/models/digits_resnet/infer", json.dumps(digits_request()).encode(),
                           {"Inference-Header-Content-Length": length})  # type: ignore[dict-item]
    assert status == 400 and "Inference-Header-Content-Length" in json.loads(body)["error"]
    assert failures(server[0]) == before + 1


@pytest.mark.parametrize("timeout", [10**400, 2**63])
def test_a_timeout_beyond_int64_is_a_400_and_counted_as_a_failure(server, timeout):
    """10**400 µs overflowed the deadline arithmetic: a 500, missing from the statistics."""
    before = failures(server[0])
    status, body = infer_json(server[0], digits_request() | {"parameters": {"timeout": timeout}})
    assert status == 400 and "timeout must be" in body["error"]
    assert failures(server[0]) == before + 1
    assert infer_json(server[0], digits_request() | {"parameters": {"timeout": 2**63 - 1}})[0] == 200


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, deflate"])
def test_a_body_that_does_not_decompress_is_a_400_on_a_connection_kept_open(server, encoding):
    host, port = server[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    for body in (b"this is not compressed at all", gzip.compress(json.dumps(digits_request()).encode())[:-9]):
        connection.request("POST", "/v2/models/digits_resnet/infer", body=body, headers={"Content-Encoding": encoding})
        response = connection.getresponse()
        answer = json.loads(response.read())
        assert response.status == 400 and ("decompress" in answer["error"] or "truncated" in answer["error"]), answer
    connection.request("POST", "/v2/models/digits_resnet/infer", body=gzip.compress(json.dumps(digits_request())
                                                                                    .encode()),
                       headers={"Content-Encoding": "gzip"})  # the same connection still serves
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["outputs"][0]["name"] == "logits"
    connection.close()


def test_an_unknown_encoding_is_a_415(server):
    status, _, body = post(server[0], "/v2/models/digits_resnet/infer", b"{}", {"Content-Encoding": "zstd"})
    assert status == 415 and "zstd" in json.loads(body)["error"]


def test_liveness_holds_while_a_large_bomb_is_refused(server):
    """A 512 MB gzip bomb (about 0.5 MB on the wire) is refused at the body limit, off the event loop: liveness keeps
    answering within 1 s (it stalled 6–8 s while a 1 GB bomb was inflated on the loop)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(deflate.compress(zeros) for _ in range(512)) + deflate.flush()
    assert len(bomb) < LIMIT
    answers: list[int] = []
    sender = threading.Thread(target=lambda: answers.append(
        post(server[0], "/v2/models/digits_resnet/infer", bomb, {"Content-Encoding": "gzip"})[0]))
    slowest = 0.0
    sender.start()
    while sender.is_alive():
        started = time.perf_counter()
        assert post(server[0], "/v2/health/live", b"")[0] in (200, 405)
        slowest = max(slowest, time.perf_counter() - started)
    sender.join()
    assert answers == [413] and slowest < 1.0, (answers, slowest)


def test_an_idle_keep_alive_connection_is_closed_after_the_keep_alive_time(bundle_copy):
    entries = load_models([bundle_copy("digits_resnet")], "auto", None, 8, None)
    with BackgroundServer(create_app(entries, LIMIT, None, keepalive_s=1.0)) as background:
        host, port = background.url.split(":")
        connection = socket.create_connection((host, int(port)), timeout=10)
        connection.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        started = time.monotonic()
        assert connection.recv(4096) == b""  # closed by the server
        assert 0.5 < time.monotonic() - started < 5
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("run", range(3))
def test_sigterm_under_keep_alive_load_answers_every_request_sent_before_it(bundle_copy, run):
    """16 clients on keep-alive connections, as tritonclient keeps them: every request whose bytes were sent before
    SIGTERM is answered (1 run in 3 left 3 of 16 unanswered), later ones are answered or refused by a closed
    connection, and the process exits within the documented 30 s."""
    import signal
    import subprocess
    import sys

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "onebyone", "serve", str(bundle_copy("digits_resnet")),
                                "--port", str(port), "--no-grpc"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    body = json.dumps(digits_request()).encode()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if post(f"127.0.0.1:{port}", "/v2/models/digits_resnet/infer", body)[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        signalled = [float("inf")]
        unanswered: list[str] = []
        statuses: list[int] = []

        def client() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            while True:
                try:
                    connection.request("POST", "/v2/models/digits_resnet/infer", body=body)
                except OSError:
                    return  # refused: the server stopped listening
                sent = time.monotonic()
                try:
                    response = connection.getresponse()
                    statuses.append(response.status)
                    response.read()
                except (OSError, http.client.HTTPException) as err:
                    if sent < signalled[0]:
                        unanswered.append(f"{type(err).__name__} {sent - signalled[0]:+.3f} s")
                    return
                if response.getheader("Connection", "").lower() == "close":
                    return

        clients = [threading.Thread(target=client) for _ in range(16)]
        for thread in clients:
            thread.start()
        time.sleep(1.0)
        signalled[0] = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for thread in clients:
            thread.join(60)
        process.wait(60)
        elapsed = time.monotonic() - signalled[0]
    finally:
        if process.poll() is None:
            process.kill()
    assert unanswered == [] and set(statuses) == {200}, (unanswered, set(statuses))
    assert elapsed < 30, f"exited {elapsed:.1f} s after SIGTERM"


CONFLICTING_BODIES = [
    (json.dumps(digits_request()).encode("utf-16-le"), "not valid JSON"),  # JSON is UTF-8 (RFC 8259)
    (b"\xef\xbb\xbf" + json.dumps(digits_request()).encode(), "not valid JSON"),  # no byte order mark
    (json.dumps({"id": "\ud800", **digits_request()}).encode(), "lone surrogate"),  # strings are valid Unicode
    (json.dumps({"id": "a\\ud800b", **digits_request()}).encode(), None),  # an escaped backslash: a valid string
]


@pytest.mark.parametrize(("body", "message"), CONFLICTING_BODIES)
def test_a_body_that_is_not_utf8_json_of_valid_strings_is_a_400(server, body, message):
    status, _, data = post(server[0], "/v2/models/digits_resnet/infer", body)
    if message is None:
        assert status == 200, data
        return
    assert status == 400 and message in json.loads(data)["error"], data


def test_an_input_with_both_data_and_binary_data_is_a_400(server):
    """Triton refuses an input given twice; onebyone once took the binary part and ignored `data`."""
    header = digits_request(parameters={"binary_data_size": 256})
    text = json.dumps(header).encode()
    status, _, data = post(server[0], "/v2/models/digits_resnet/infer", text + bytes(256),
                           {"Inference-Header-Content-Length": str(len(text))})
    assert status == 400 and "both data and parameters.binary_data_size" in json.loads(data)["error"]


def test_two_different_header_lengths_are_a_400(server):
    text = json.dumps(digits_request()).encode()
    request = (b"POST /v2/models/digits_resnet/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Content-Length: " + str(len(text)).encode() + b"\r\nInference-Header-Content-Length: "
               + str(len(text)).encode() + b"\r\nInference-Header-Content-Length: 5\r\n\r\n" + text)
    answer = raw_exchange(server[0], request)
    assert answer.startswith(b"HTTP/1.1 400") and b"Inference-Header-Content-Length" in answer, answer[:300]


@pytest.mark.parametrize("where", ["input", "output"])
def test_an_unregistered_shared_memory_region_is_a_400(server, where):
    header = digits_request(**({"parameters": {"shared_memory_region": "r0"}} if where == "input" else {}))
    if where == "output":
        header["outputs"] = [{"name": "logits", "parameters": {"shared_memory_region": "r0"}}]
    status, body = infer_json(server[0], header)
    assert status == 400 and "shared memory region 'r0' is not registered" in body["error"]


def test_a_declared_length_over_the_limit_is_refused_before_the_body(server):
    """Without `Expect: 100-continue` too: the 413 comes as soon as the headers declare more than the limit (the
    connection then closes), not after the client has uploaded it."""
    request = (b"POST /v2/models/digits_resnet/infer HTTP/1.1\r\nHost: x\r\n"
               b"Content-Length: " + str(LIMIT * 4).encode() + b"\r\n\r\n")
    host, port = server[0].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request + b"{" * 100)
        first = connection.recv(65536)
    assert first.startswith(b"HTTP/1.1 413"), first[:80]
    assert b"error" in first


def test_compute_input_starts_when_the_body_is_complete(server):
    """Triton's compute_input is input preparation: a client that takes a second to upload its body adds that second
    to nothing the statistics report as compute (onebyone once counted it in compute_input)."""
    client = triton.InferenceServerClient(server[0])
    before = client.get_inference_statistics("digits_resnet")["model_stats"][0]["inference_stats"]["compute_input"]
    text = json.dumps(digits_request()).encode()
    host, port = server[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /v2/models/digits_resnet/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           b"Content-Length: " + str(len(text)).encode() + b"\r\n\r\n" + text[:10])
        time.sleep(1.0)
        connection.sendall(text[10:])
        assert connection.recv(65536).startswith(b"HTTP/1.1 200")
    after = client.get_inference_statistics("digits_resnet")["model_stats"][0]["inference_stats"]["compute_input"]
    assert after["count"] == before["count"] + 1
    assert after["ns"] - before["ns"] < 0.5e9, f"compute_input grew by {(after['ns'] - before['ns']) / 1e9:.2f} s"


@pytest.mark.parametrize("keepalive_s", [2.0, 4.0])
def test_an_idle_grpc_connection_is_closed_within_the_keep_alive_time(bundle_copy, keepalive_s):
    """GOAWAY within `--keepalive-s` (+25% slack) after the last call; gRPC core's idle timer once closed it after
    1.9× (3.73 s for 2 s, 139.8 s for 75 s)."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceStub

    entries = load_models([bundle_copy("digits_resnet")], "auto", None, 8, None)
    with BackgroundServer(create_app(entries, LIMIT, None, keepalive_s=keepalive_s)) as background:
        idle = threading.Event()
        with grpc.insecure_channel(background.grpc_url) as channel:
            GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=10)
            last_call = time.monotonic()
            channel.subscribe(lambda state: state == grpc.ChannelConnectivity.IDLE and idle.set())
            assert idle.wait(keepalive_s * 3), "never closed"
            closed_after = time.monotonic() - last_call
    assert 0.5 * keepalive_s < closed_after <= 1.25 * keepalive_s, f"closed after {closed_after:.2f} s"
