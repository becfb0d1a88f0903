"""onebyone inside a real Triton: the `model.py` of Triton's Python backend that runs any onebyone artifact with
`onebyone.open` — an OpenVINO INT8 or BF16 file on CPU instances included — so CPU results run in an existing Triton
fleet (`onebyone triton-repo --backend python`).

The model reads its artifact and engine from the config's `parameters` (`onebyone_artifact`, `onebyone_engine`;
else the config's `default_model_filename`, default `model.onnx`, on `auto`). Requests Triton batched
together are concatenated along the batch axis and run once.

Tensors cross through DLPack via torch: with NumPy 2, the Python backend's `as_numpy()` and `Tensor(name, ndarray)`
hand over corrupted data, and NumPy's own DLPack capsules are refused by Triton 2.51's `from_dlpack`. The stub
process finds Python through the first `python3` on PATH and needs `libpython3.x.so` on LD_LIBRARY_PATH (docs/serve.md).
"""

MODEL_FILENAME = "model.py"
ARTIFACT_PARAMETER = "onebyone_artifact"
ENGINE_PARAMETER = "onebyone_engine"

MODEL_PY = '''"""Written by `onebyone triton-repo`: runs a onebyone artifact in Triton's Python backend
(runtime/serve/triton_python.py in onebyone explains it)."""

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils
from torch.utils.dlpack import from_dlpack, to_dlpack

import onebyone


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        artifact = parameters.get("onebyone_artifact") or config.get("default_model_filename") or "model.onnx"
        engine = parameters.get("onebyone_engine") or "auto"
        self.session = onebyone.open(os.path.join(folder, artifact), engine)
        self.batching = config.get("max_batch_size", 0) > 0
        self.outputs = [output["name"] for output in config["output"]]

    def execute(self, requests):
        feeds = [{spec.name: from_dlpack(pb_utils.get_input_tensor_by_name(request, spec.name).to_dlpack()).numpy()
                  for spec in self.session.inputs} for request in requests]
        if self.batching and len(feeds) > 1:
            sizes = [len(next(iter(feed.values()))) for feed in feeds]
            merged = self.session.run({name: np.concatenate([feed[name] for feed in feeds]) for name in feeds[0]})
            bounds = np.cumsum([0, *sizes])
            results = [{name: value[start:stop] for name, value in merged.items()}
                       for start, stop in zip(bounds[:-1], bounds[1:])]
        else:
            results = [self.session.run(feed) for feed in feeds]
        return [pb_utils.InferenceResponse([
            pb_utils.Tensor.from_dlpack(name, to_dlpack(torch.from_numpy(np.ascontiguousarray(result[name]))))
            for name in self.outputs]) for result in results]

    def finalize(self):
        self.session.close()
'''
