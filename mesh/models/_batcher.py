"""Micro-batching: concurrent requests are merged along axis 0, run once, and split back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.errors import InvalidArgument

Arrays = dict[str, npt.NDArray[Any]]
RunFn = Callable[[Arrays], Arrays]


@dataclass
class _Request:
    inputs: Arrays
    rows: int
    future: asyncio.Future[Arrays] = field(repr=False)


class MicroBatcher:
    """Merge concurrent :meth:`submit` calls into one ``run`` of up to ``max_batch`` rows.

    A batch is sent when it holds ``max_batch`` rows or ``max_wait_ms`` after its first request came,
    whichever is first; a single request larger than ``max_batch`` runs alone. ``run`` is called in a
    worker thread (ONNX Runtime releases the GIL), one batch at a time; while it runs, the next batch
    gathers. An error in ``run`` is raised to every caller of that batch.
    """

    def __init__(self, run: RunFn, max_batch: int, max_wait_ms: float, *, in_thread: bool = True) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self._run = run
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._in_thread = in_thread
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._carry: _Request | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches_run = 0
        """How many times ``run`` was called (for metrics and tests)."""

    async def submit(self, inputs: Arrays) -> Arrays:
        """Run ``inputs`` (each array has the same rows on axis 0) as part of a batch."""
        rows = _rows(inputs)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="micro-batcher")
        future: asyncio.Future[Arrays] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(inputs, rows, future))
        return await future

    async def aclose(self) -> None:
        """Stop the worker; requests still waiting fail with CancelledError."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        pending = [self._carry] if self._carry else []
        while not self._queue.empty():
            pending.append(self._queue.get_nowait())
        for request in pending:
            request.future.cancel()

    async def __aenter__(self) -> MicroBatcher:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _work(self) -> None:
        while True:
            batch = await self._gather()
            await self._run_batch(batch)

    async def _gather(self) -> list[_Request]:
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, rows = [first], first.rows
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while rows < self._max_batch:
            request = await self._next_before(deadline)
            if request is None:
                break
            if rows + request.rows > self._max_batch:
                self._carry = request  # first of the next batch: requests are never split
                break
            batch.append(request)
            rows += request.rows
        return batch

    async def _next_before(self, deadline: float) -> _Request | None:
        if not self._queue.empty():
            return self._queue.get_nowait()
        timeout = deadline - asyncio.get_running_loop().time()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _run_batch(self, batch: list[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]  # callers that gave up are dropped
        if not live:
            return
        try:
            merged = _concat([r.inputs for r in live])
            self.batches_run += 1
            outputs = await asyncio.to_thread(self._run, merged) if self._in_thread else self._run(merged)
            results = _split(outputs, [r.rows for r in live])
        except Exception as error:
            for request in live:
                if not request.future.done():
                    request.future.set_exception(error)
            return
        for request, result in zip(live, results, strict=True):
            if not request.future.done():
                request.future.set_result(result)


def _rows(inputs: Arrays) -> int:
    counts = {name: int(np.shape(array)[0]) if np.ndim(array) else -1 for name, array in inputs.items()}
    sizes = set(counts.values())
    if not counts or len(sizes) != 1 or -1 in sizes:
        raise InvalidArgument(f"every input needs the same number of rows on axis 0, got {counts}")
    return sizes.pop()


def _concat(requests: list[Arrays]) -> Arrays:
    if len(requests) == 1:
        return requests[0]
    names = requests[0].keys()
    if any(r.keys() != names for r in requests):
        raise InvalidArgument("requests in one batch have different input names")
    return {name: np.concatenate([r[name] for r in requests], axis=0) for name in names}


def _split(outputs: Arrays, rows: list[int]) -> list[Arrays]:
    total = sum(rows)
    for name, array in outputs.items():
        if np.ndim(array) == 0 or np.shape(array)[0] != total:
            raise ValueError(f"output {name!r} has shape {np.shape(array)}, expected {total} rows on axis 0")
    bounds = np.cumsum(rows)[:-1]
    parts = {name: np.split(array, bounds, axis=0) for name, array in outputs.items()}
    return [{name: parts[name][i] for name in outputs} for i in range(len(rows))]
