"""A bounded, seeded (`ONEBYONE_TEST_SEED`), loopback-only fuzz of `onebyone serve` in its own process: 2,100
malformed HTTP requests, 500 malformed gRPC messages and 100 byte strings that are no protobuf, across the ways a
request can be wrong (nesting depth, rank over 64, huge and zero dims, wrong field types, non-finite values,
oversized and truncated bodies, bad lengths, header lengths in other scripts' digits or over 4,300 digits, timeouts
beyond int64, bodies that do not decompress or name an unknown encoding, typed contents out of their datatype's
range). Every answer is a JSON 4xx (HTTP) or INVALID_ARGUMENT (gRPC; NOT_FOUND for junk that happens to parse),
never a 5xx, UNKNOWN or INTERNAL; liveness holds throughout; afterwards the server's resident memory is back within
10% of where it started and a valid request on each transport equals the in-process session."""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
import time
import zlib
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

import onebyone.runtime.sessions.opening as sessions
from bench.serve import free_port
from tests.helpers import REPO

LIMIT_MB = 1
RSS_GROWTH = 1.10  # resident memory after the fuzz ≤ 1.10 × after the warm-up
WARM_UP = 200  # valid requests per transport before the baseline: ORT's arena, grpc's and Python's pools fill


def _valid_header(batch: int = 1) -> dict:
    return {"inputs": [{"name": "input", "shape": [batch, 1, 8, 8], "datatype": "FP32",
                        "parameters": {"binary_data_size": batch * 256}}]}


def malformed_requests(rng: np.random.Generator, count: int, limit: int) -> list[tuple[bytes, dict[str, str]]]:
    """`count` malformed infer requests (body, headers), cycling through the ways a body can be wrong."""
    payload = np.zeros((1, 1, 8, 8), np.float32).tobytes()

    def pick(options: list) -> object:
        return options[int(rng.integers(len(options)))]

    def binary(header: dict, data: bytes = payload, length: str | None = None) -> tuple[bytes, dict[str, str]]:
        text = json.dumps(header).encode()
        value = length if length is not None else str(len(text))
        return text + data, {"Inference-Header-Content-Length": value.encode()}  # bytes: any script's digits

    def mutate_header() -> dict:
        header = _valid_header()
        tensor = header["inputs"][0]
        choice = rng.integers(9)
        if choice == 0:
            tensor["shape"] = [int(rng.integers(-10**6, 0)), 1, 8, 8]
        elif choice == 1:
            tensor["shape"] = [int(rng.integers(2**31, 2**62)), 1, 8, 8]
        elif choice == 2:
            tensor["datatype"] = pick(["FP8", "BYTES", "fp32", "", "COMPLEX64", "BF16"])
        elif choice == 3:
            tensor["shape"] = pick(["1,1,8,8", None, [1.5, 1, 8, 8], [[1], 1]])
        elif choice == 4:
            tensor["parameters"]["binary_data_size"] = int(rng.integers(-100, 10**9))
        elif choice == 5:
            del tensor["name"]
        elif choice == 6:
            header["inputs"] = pick([[], {}, "input", None])
        elif choice == 7:
            tensor["name"] = "input" * int(rng.integers(2, 50))
        else:
            header["outputs"] = pick([[{"name": "probs"}], "logits", [{"parameters": 1}]])
        return header

    kinds = [
        lambda: (bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8)), {}),  # not JSON
        lambda: (b'{"inputs": [' + b"{" * int(rng.integers(1, 50)), {}),  # truncated JSON
        lambda: binary(_valid_header(), payload[:int(rng.integers(0, len(payload)))]),  # truncated binary
        lambda: binary(_valid_header(), payload + b"\0" * int(rng.integers(1, 64))),  # unclaimed bytes
        lambda: binary(_valid_header(), length=str(int(rng.integers(10**4, 10**9)))),  # header length too long
        lambda: binary(_valid_header(), length=pick(["-5", "0", "abc", "1e3", ""])),  # bad header length
        lambda: binary(mutate_header()),
        lambda: (b"x" * (limit + int(rng.integers(1, 4096))), {}),  # over the body limit
        lambda: (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                         "data": ["a"] * 64}]}).encode(), {}),  # wrong JSON data
        lambda: (b'{"inputs": ' + b"[" * int(rng.integers(2_000, 20_000)) + b"]" * 10 + b"}", {}),  # deep nesting
        lambda: binary(_valid_header() | {"inputs": [{"name": "input", "datatype": "FP32",
                                                      "shape": [1] * int(rng.integers(33, 80)),
                                                      "parameters": {"binary_data_size": 4}}]},
                       payload[:4]),  # rank far over any model's
        lambda: (json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "data": [],
                                         "shape": [0, *[int(rng.integers(2**40, 2**62))] * 3]}]}).encode(),
                 {}),  # zero beside huge dims
        lambda: (json.dumps({"inputs": [{"name": pick([1, None, ["input"], {"n": 1}]), "datatype":
                                         pick([["FP32"], 32, {"t": "FP32"}, None]), "shape": [1, 1, 8, 8],
                                         "data": [0.0] * 64}]}).encode(), {}),  # wrong field types
        lambda: (b'{"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": ['
                 + b",".join([pick([b"NaN", b"Infinity", b"-Infinity", b"1e999"])] * 64) + b"]}]}",
                 {}),  # non-finite values (a 400 from the model's input check)
        lambda: (json.dumps(_valid_header() | {"outputs": [{"name": "logits", "parameters": {
            pick(["binary_data", "classification"]): pick(["yes", -1, 0, 1.5, None])}}]}).encode(),
                 {}),  # wrong output parameters
        lambda: binary(_valid_header(), length=pick(["١٢", "²", "1" * int(rng.integers(20, 6000)), "+99", "1_0",
                                                     "0x10", "٣٤٥"])),  # header lengths int() reads, HTTP must not
        lambda: binary(_valid_header() | {"parameters": {"timeout": pick([10**400, 2**63, -1, "soon", 1.5, True,
                                                                           [1], {"us": 1}])}}),  # bad timeouts
        lambda: (pick([bytes(rng.integers(0, 256, int(rng.integers(1, 300)), dtype=np.uint8)),
                       gzip.compress(json.dumps(_valid_header()).encode())[:-int(rng.integers(1, 12))],
                       zlib.compress(b"{}") + b"trailing"]),
                 {"Content-Encoding": pick(["gzip", "deflate", "br", "gzip, deflate", "br, gzip", "x-gzip"])}),
        lambda: (b"{}", {"Content-Encoding": pick(["zstd", "compress", "gzip;q=1", "\u00e9"])}),  # unknown ones
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]


def malformed_messages(rng: np.random.Generator, count: int) -> list:
    """`count` ModelInferRequest protobufs a client library would never send, cycling through twelve ways."""
    from tritonclient.grpc import service_pb2 as pb

    payload = np.zeros((1, 1, 8, 8), np.float32).tobytes()
    cases = []
    for index in range(count):
        request = pb.ModelInferRequest(model_name="digits_resnet")
        tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 1, 8, 8])
        choice = index % 12
        if choice == 0:
            tensor.ClearField("shape")
            tensor.shape.extend([1] * int(rng.integers(33, 70)))
        elif choice == 1:
            tensor.ClearField("shape")
            tensor.shape.extend([0, 2**40, 2**40])
        elif choice == 2:
            tensor.datatype = str(rng.choice(["FP8", "BYTES", "fp32", "", "BF16"]))
        elif choice == 3:
            request.raw_input_contents.append(payload[:int(rng.integers(0, len(payload)))])
        elif choice == 4:
            request.raw_input_contents.extend([payload, payload])
        elif choice == 5:
            tensor.contents.fp32_contents.extend([0.0] * int(rng.integers(0, 63)))
        elif choice == 6:
            tensor.shape[0] = -int(rng.integers(1, 10**6))
        elif choice == 7:
            request.ClearField("inputs")
        elif choice == 8:
            request.outputs.add(name="logits").parameters["classification"].string_param = "three"
        elif choice == 9:
            tensor.name = "image"
            request.raw_input_contents.append(payload)
        else:  # typed contents outside a narrow integer type, which its wider protobuf field holds
            tensor.datatype, bound = str(rng.choice(["INT8", "UINT8", "INT16", "UINT16"])), 70_000
            field = tensor.contents.uint_contents if tensor.datatype.startswith("U") else tensor.contents.int_contents
            field.extend([int(rng.integers(0, bound)) * (1 if choice == 10 else -1 if tensor.datatype[0] == "I"
                                                         else 1) for _ in range(64)])
            field[0] = bound  # at least one value is out of range
        cases.append(request)
    return cases


def resident_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])


@pytest.fixture
def server_process(bundle_copy):
    """`onebyone serve digits_resnet` (HTTP and gRPC, 1 MB body limit) in a process of its own; yields
    (process, HTTP url, gRPC url, bundle)."""
    bundle = bundle_copy("digits_resnet")
    port, grpc_port = free_port(), free_port()
    process = subprocess.Popen([sys.executable, "-m", "onebyone", "serve", str(bundle), "--port", str(port),
                                "--grpc-port", str(grpc_port), "--max-request-mb", str(LIMIT_MB)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url, grpc_url = f"127.0.0.1:{port}", f"127.0.0.1:{grpc_port}"
    try:
        client = triton_http.InferenceServerClient(url)
        for _ in range(600):
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                if client.is_server_ready():
                    break
            except Exception:  # not listening yet
                time.sleep(0.1)
        yield process, url, grpc_url, bundle
    finally:
        process.terminate()
        process.wait(60)


def valid_answers(url: str, grpc_url: str, x: np.ndarray, count: int) -> list[np.ndarray]:
    """`count` requests of `x` on each transport; the logits of the last of each."""
    http_client = triton_http.InferenceServerClient(url)
    grpc_client = triton_grpc.InferenceServerClient(grpc_url)
    answers = []
    for triton, client in ((triton_http, http_client), (triton_grpc, grpc_client)):
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        for _ in range(count):
            result = client.infer("digits_resnet", [tensor])
        answers.append(result.as_numpy("logits"))
    grpc_client.close()
    return answers


def test_fuzzed_requests_get_4xx_memory_returns_and_the_server_still_answers(server_process, rng):
    process, url, grpc_url, bundle = server_process
    x = rng.uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    valid_answers(url, grpc_url, x, WARM_UP)
    start_kib = resident_kib(process.pid)

    host, port = url.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    requests = malformed_requests(rng, 2100, LIMIT_MB << 20)
    statuses = []
    for index, (body, headers) in enumerate(requests):
        try:
            connection.request("POST", "/v2/models/digits_resnet/infer", body=body, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        except (ConnectionError, http.client.HTTPException):  # the server may close after a 413
            connection.close()
            connection = http.client.HTTPConnection(host, int(port), timeout=10)
            continue
        statuses.append(response.status)
        assert 400 <= response.status < 500, f"request {index}: {response.status} {payload[:200]!r}"
        assert isinstance(json.loads(payload)["error"], str)
        if index % 100 == 0:
            connection.request("GET", "/v2/health/live")
            health = connection.getresponse()
            assert health.status == 200 and json.loads(health.read()) == {"live": True}
    assert len(statuses) >= 2000, f"only {len(statuses)} of {len(requests)} requests were answered"

    from tritonclient.grpc.service_pb2_grpc import GRPCInferenceServiceStub

    channel = grpc.insecure_channel(grpc_url)
    stub = GRPCInferenceServiceStub(channel)
    codes = set()
    for request in malformed_messages(rng, 500):
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(request, timeout=30)
        codes.add(error.value.code())
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes as sent, no protobuf
    for length in rng.integers(1, 400, 100):
        junk = bytes(rng.integers(0, 256, int(length), dtype=np.uint8))
        try:
            call(junk, timeout=30)  # the odd random string is a valid (empty-model) request: NOT_FOUND
        except grpc.RpcError as error:
            codes.add(error.code())
    channel.close()
    assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}, codes

    end_kib = resident_kib(process.pid)
    assert end_kib <= RSS_GROWTH * start_kib, f"resident memory {start_kib} KiB → {end_kib} KiB"
    with sessions.open(bundle) as session:
        expected = session.run(x)["logits"]
    for answer in valid_answers(url, grpc_url, x, 1):
        np.testing.assert_allclose(answer, expected, rtol=1e-5, atol=1e-6)
    print(f"{len(statuses)} malformed HTTP requests (statuses {sorted(set(statuses))}) and 500 gRPC messages; "
          f"resident memory {start_kib} → {end_kib} KiB")
