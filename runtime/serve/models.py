"""The models a server holds: a name, the session (self-checked at start-up), its runner, and their KServe v2
metadata and Triton-style configuration."""

from __future__ import annotations

import dataclasses
from typing import Any

from onebyone.runtime.bundle.labels import LABEL_FILENAME
from onebyone.runtime.bundle.tensors import TensorSpec, batchable
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.serve.batcher import DynamicBatcher, Runner, Tensors
from onebyone.runtime.serve.protocol import datatype_of
from onebyone.runtime.serve.statistics import ModelStatistics
from onebyone.runtime.sessions.base import Session
from onebyone.runtime.sessions.engines import engine
from onebyone.runtime.sessions.target import Target

VERSION = "1"


def model_name(target: Target) -> str:
    """A bundle's primary model is named after the bundle (`digits_resnet`); another of its artifacts gets the file
    stem without `model.` (`digits_resnet.opt.int8-ort`); a loose file its stem; a torch model its zoo name."""
    if target.path is None:
        return (target.model or "model").rpartition(":")[2]
    stem = target.path.name.rsplit(".", 1)[0]
    if target.bundle is None:
        return stem
    primary = target.manifest.primary_onnx()
    return target.bundle.name if target.path.name == primary else f"{target.bundle.name}.{stem.removeprefix('model.')}"


@dataclasses.dataclass
class ModelEntry:
    """One served model. `error` is set (and `ready` false) when its self-check failed at start-up."""

    name: str
    session: Session | None
    runner: Runner | None
    max_batch_size: int  # 0: the model has no batch axis (Triton's convention)
    error: str | None = None
    version: str = VERSION
    statistics: ModelStatistics = dataclasses.field(default_factory=ModelStatistics)

    @property
    def ready(self) -> bool:
        return self.error is None

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The model's class labels (classification answers "value:index:label"), where it has them."""
        return self.session.model.labels if self.session is not None else None

    def specs(self, specs: list[TensorSpec]) -> list[dict[str, Any]]:
        return [{"name": s.name, "datatype": datatype_of(s.dtype), "shape": list(s.shape)} for s in specs]

    def metadata(self) -> dict[str, Any]:
        session = self._session()
        return {"name": self.name, "versions": [self.version], "platform": engine(session.backend).platform,
                "inputs": self.specs(session.inputs), "outputs": self.specs(session.outputs)}

    def config(self, max_delay_us: int | None) -> dict[str, Any]:
        """Triton's model configuration, as JSON (dims without the batch axis when batching)."""
        session = self._session()
        skip = 1 if self.max_batch_size else 0

        def tensors(specs: list[TensorSpec]) -> list[dict[str, Any]]:
            return [{"name": s.name, "data_type": f"TYPE_{datatype_of(s.dtype)}", "dims": list(s.shape[skip:])}
                    for s in specs]

        outputs = tensors(session.outputs)
        if self.labels is not None:  # as `onebyone triton-repo` writes it: Triton then answers with the same labels
            outputs = [output | {"label_filename": LABEL_FILENAME} for output in outputs]
        config: dict[str, Any] = {"name": self.name, "platform": engine(session.backend).platform,
                                  "max_batch_size": self.max_batch_size, "input": tensors(session.inputs),
                                  "output": outputs}
        if max_delay_us is not None and self.max_batch_size:
            config["dynamic_batching"] = {"max_queue_delay_microseconds": max_delay_us}
        return config

    def _session(self) -> Session:
        if self.session is None:
            raise UserError(f"model {self.name!r} did not load: {self.error}")
        return self.session


def make_runner(session: Session, statistics: ModelStatistics, max_batch: int, max_delay: float | None,
                max_queue: int | None = None) -> Runner:
    """A DynamicBatcher for batchable models when `max_delay` is given, else a plain Runner; either refuses requests
    beyond `max_queue` waiting ones."""

    def run(inputs: Tensors) -> Tensors:
        return session.run(inputs)

    if max_delay is not None and batchable(session.inputs):
        return DynamicBatcher(run, statistics, max_batch, max_delay, max_queue)
    return Runner(run, statistics, max_queue)
