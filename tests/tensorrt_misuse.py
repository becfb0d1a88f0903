"""Deliberately wrong TensorRT usage, never imported: tests/test_tensorrt_api.py proves the conformance check
reports each marked line (`# wrong in 10, 11` / `# wrong in 11`) and nothing else."""

from typing import Any


def build(trt: Any) -> Any:
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)  # wrong in 11
    network = builder.create_network(flags)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)  # wrong in 11
    config.max_workspace_size = 1 << 30  # wrong in 10, 11
    config.create_timing_cache()  # wrong in 10, 11
    profile = builder.create_optimisation_profile()  # wrong in 10, 11
    if hasattr(trt.BuilderFlag, "INT8"):
        config.set_flag(trt.BuilderFlag.INT8)  # guarded: never reported
    return builder.build_serialized_network(network, config), profile
