"""Dynamic batching: concurrent requests whose inputs differ only in batch size are concatenated along axis 0, run
once off the event loop, and split back per request.

A batch is dispatched when it holds `max_batch` samples, or `max_delay` seconds after it started forming (like
Triton's `max_queue_delay`, but counted from the start of forming, so requests queued during the previous run can
still be joined by the clients that run just answered). Requests that cannot join (another shape or dtype, or too
many samples) start the next batch. Runs happen one at a time on a single worker thread, so a session never runs
concurrently with itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable

import numpy as np

from onebyone.runtime.serve.statistics import ModelStatistics

Tensors = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Ran:
    """A request's outputs, how long it waited for its model run (ns) and how long that run took (ns)."""

    outputs: Tensors
    queue_ns: int
    infer_ns: int


@dataclasses.dataclass
class _Pending:
    inputs: Tensors
    key: tuple
    samples: int
    future: asyncio.Future[Ran]
    submitted: int  # time.perf_counter_ns() when the request reached the runner


def batch_key(inputs: Tensors) -> tuple:
    """Requests with equal keys can be concatenated: same names, dtypes and non-batch dimensions."""
    return tuple(sorted((name, array.dtype.str, array.shape[1:]) for name, array in inputs.items()))


class QueueFull(Exception):
    """The model already has `max_queue` requests waiting or running: answered 503 / UNAVAILABLE, retry later."""


class Runner:
    """Runs a model on one worker thread and records its runs in `statistics`; without batching each request runs
    alone. At most `max_queue` requests wait or run at once (None: no bound); the next one is refused (QueueFull)
    rather than growing memory."""

    def __init__(self, run: Callable[[Tensors], Tensors], statistics: ModelStatistics,
                 max_queue: int | None = None) -> None:
        self._run = run
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="onebyone-run")
        self.statistics = statistics
        self.max_queue = max_queue
        self.waiting = 0

    def admit(self) -> None:
        """Count one more request in, or raise QueueFull; `release` counts it out."""
        if self.max_queue is not None and self.waiting >= self.max_queue:
            raise QueueFull(f"{self.waiting} requests are already waiting for this model (the queue holds "
                            f"{self.max_queue}); retry later")
        self.waiting += 1

    def release(self) -> None:
        self.waiting -= 1

    def _timed(self, inputs: Tensors) -> tuple[Tensors, int, int]:
        started = time.perf_counter_ns()
        return self._run(inputs), started, time.perf_counter_ns()

    async def execute(self, inputs: Tensors) -> tuple[Tensors, int, int]:
        """Run once on the worker thread: (outputs, start ns, end ns)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._timed, inputs)

    async def infer(self, inputs: Tensors) -> Ran:
        submitted = time.perf_counter_ns()
        outputs, started, ended = await self.execute(inputs)
        self.statistics.record_run(len(next(iter(inputs.values()))), 0, ended - started, 0)
        return Ran(outputs, started - submitted, ended - started)

    async def close(self) -> None:
        self._executor.shutdown(wait=True)


class DynamicBatcher(Runner):
    """A Runner that gathers concurrent requests into batches of up to `max_batch` samples."""

    def __init__(self, run: Callable[[Tensors], Tensors], statistics: ModelStatistics, max_batch: int,
                 max_delay: float, max_queue: int | None = None) -> None:
        super().__init__(run, statistics, max_queue)
        self.max_batch = max_batch
        self.max_delay = max_delay
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()  # None: stop once the queue is drained
        self._carry: _Pending | None = None  # a request that could not join the last batch: it starts the next
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    async def infer(self, inputs: Tensors) -> Ran:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())
        future: asyncio.Future[Ran] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(inputs, batch_key(inputs), len(next(iter(inputs.values()))), future,
                                       time.perf_counter_ns()))
        return await future

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._carry is not None:
            pending, self._carry = self._carry, None
            return pending
        if timeout is None:
            return await self._queue.get()
        return await asyncio.wait_for(self._queue.get(), max(timeout, 0.0))

    async def _gather(self, first: _Pending) -> list[_Pending]:
        group, samples = [first], first.samples
        deadline = asyncio.get_running_loop().time() + self.max_delay
        while samples < self.max_batch:
            try:
                pending = await self._next(deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                break
            if pending is None:
                self._stopping = True
                break
            if pending.key != first.key or samples + pending.samples > self.max_batch:
                self._carry = pending
                break
            group.append(pending)
            samples += pending.samples
        return group

    async def _serve(self) -> None:
        while (first := await self._next(None)) is not None:
            group = await self._gather(first)
            await self._dispatch(group)
            if self._stopping:
                return

    async def _dispatch(self, group: list[_Pending]) -> None:
        live = [pending for pending in group if not pending.future.cancelled()]
        if not live:
            return
        forming = time.perf_counter_ns()
        names = list(live[0].inputs)
        batch = {name: np.concatenate([p.inputs[name] for p in live]) if len(live) > 1 else live[0].inputs[name]
                 for name in names}
        formed = time.perf_counter_ns()
        try:
            outputs, started, ended = await self.execute(batch)
        except Exception as err:  # the model failed: every request of the batch gets the error
            for pending in live:
                if not pending.future.done():
                    pending.future.set_exception(err)
            return
        start = 0
        for pending in live:
            stop = start + pending.samples
            if not pending.future.done():
                pending.future.set_result(Ran({name: value[start:stop] for name, value in outputs.items()},
                                              started - pending.submitted, ended - started))
            start = stop
        self.statistics.record_run(start, formed - forming, ended - started, time.perf_counter_ns() - ended)

    async def close(self) -> None:
        """Finish every queued request, then stop."""
        if self._task is not None:
            await self._queue.put(None)
            await self._task
        await super().close()
