"""One inference request, whatever the transport (HTTP, gRPC): check the parsed request against the model, run it
through the model's runner (dynamic batching), encode the answer, and record it in the model's statistics — a
success with where its time went, or a failure with its duration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TypeVar

from onebyone.runtime.bundle.tensors import prepare_inputs, select_outputs
from onebyone.runtime.core.errors import UserError
from onebyone.runtime.serve.batcher import QueueFull, Ran, Tensors
from onebyone.runtime.serve.models import ModelEntry
from onebyone.runtime.serve.protocol import InferRequest, ProtocolError
from onebyone.runtime.serve.statistics import RequestTimes

Answer = TypeVar("Answer")


class TimedOut(Exception):
    """The request's `timeout` passed before its model run finished: answered 503 / UNAVAILABLE."""


def checked_inputs(entry: ModelEntry, request: InferRequest) -> Tensors:
    """The request's inputs as the model takes them: names, datatypes (equal to the model's), shapes, batch size;
    requested outputs must exist. ProtocolError or UserError otherwise."""
    session = entry.session
    for name, array in request.inputs.items():
        expected = next((spec for spec in session.inputs if spec.name == name), None)
        if expected is not None and array.dtype != expected.dtype:
            raise ProtocolError(f"input {name!r} is {array.dtype.name}; the model takes {expected.dtype.name}")
    inputs = prepare_inputs(session.inputs, request.inputs, session.batch_range)
    if request.outputs is not None:
        select_outputs(session.outputs, list(request.outputs))
    samples = len(next(iter(inputs.values())))
    if entry.max_batch_size and samples > entry.max_batch_size:
        raise ProtocolError(f"batch {samples} exceeds the model's max_batch_size {entry.max_batch_size}")
    return inputs


async def answer(entry: ModelEntry, received: int, parse: Callable[[], Awaitable[InferRequest]],
                 encode: Callable[[InferRequest, Tensors], Answer]) -> Answer:
    """Parse, check, run and encode one request that arrived at `received` (time.perf_counter_ns())."""
    try:
        entry.runner.admit()
    except QueueFull:
        entry.statistics.record_failure(time.perf_counter_ns() - received, "REJECTED")
        raise
    try:
        request = await parse()
        inputs = checked_inputs(entry, request)
        checked = time.perf_counter_ns()
        ran = await _within(entry.runner.infer(inputs), request.timeout_us)
        answered = time.perf_counter_ns()
        result = encode(request, ran.outputs)
    except (ProtocolError, UserError, TimedOut) as err:
        entry.statistics.record_failure(time.perf_counter_ns() - received,
                                        "REJECTED" if isinstance(err, TimedOut) else "OTHER")
        raise
    except Exception:
        entry.statistics.record_failure(time.perf_counter_ns() - received, "BACKEND")
        raise
    finally:
        entry.runner.release()
    done = time.perf_counter_ns()
    entry.statistics.record_success(len(next(iter(inputs.values()))), RequestTimes(
        total=done - received, queue=ran.queue_ns, compute_input=checked - received, compute_infer=ran.infer_ns,
        compute_output=done - answered))
    return result


async def _within(run: Coroutine[object, object, Ran], timeout_us: int) -> Ran:
    """`run`, given up after `timeout_us` (0: no limit). A request given up while queued never runs: the batcher
    skips cancelled requests, and a plain runner's job is cancelled before it starts."""
    if not timeout_us:
        return await run
    try:
        return await asyncio.wait_for(run, timeout_us / 1e6)
    except TimeoutError:
        raise TimedOut(f"the request's timeout of {timeout_us} µs expired before the model answered it") from None
