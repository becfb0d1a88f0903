"""Readers of files onebyone writes for other tools (a TensorRT calibration cache, a Triton model configuration) and
a stand-in TensorRT plan, for the tests."""

from __future__ import annotations

import struct

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from onebyone.runtime.bundle.plan import PlanInfo, plan_info_path
from onebyone.runtime.core.files import sha256_file


def parse_cache(text: str) -> tuple[str, dict[str, float]]:
    """(header, scale per tensor) of a TensorRT calibration cache's text: the reader TensorRT has, for the tests."""
    header, *lines = text.strip().splitlines()
    return header, {name: struct.unpack(">f", bytes.fromhex(value))[0]
                    for name, _, value in (line.rpartition(": ") for line in lines)}


def parse_config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def write_plan(folder):
    """A stand-in plan (its bytes are never run here) with the plan.json `onebyone build` writes."""
    plan = folder / "model.plan"
    plan.write_bytes(b"engine")
    plan_info_path(plan).write_text(PlanInfo(
        tensorrt="10.13.0.35", gpu="NVIDIA H200", compute_capability="9.0", onnx={"name": "model.onnx", "sha256": ""},
        plan_sha256=sha256_file(plan), precision="fp16",
        profiles={"input": {"min": [1, 1, 8, 8], "opt": [8, 1, 8, 8], "max": [32, 1, 8, 8]}}, build_seconds=1.0,
        options={}, metadata={}, io={"inputs": [{"name": "input", "dtype": "float16", "shape": [-1, 1, 8, 8]}],
                                     "outputs": [{"name": "logits", "dtype": "float16", "shape": [-1, 10]}]}).to_json())
    return plan
