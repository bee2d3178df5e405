"""Micro-batching: concurrent requests are gathered, run once, and the results handed back.

:class:`Coalescer` is the general form (items in, one result or error per item out: e.g. many gRPC calls
into one ``rank_many``); :class:`MicroBatcher` is the array form (inputs merged along axis 0, one model
run, outputs split back).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt

from mesh.errors import InvalidArgument

Arrays = dict[str, npt.NDArray[Any]]
RunFn = Callable[[Arrays], Arrays]
T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Request(Generic[T, R]):
    item: T
    size: int
    future: asyncio.Future[R] = field(repr=False)


class _Batching(Generic[T, R]):
    """The gathering loop both batchers share: a batch is sent when it holds ``max_batch`` (in the
    subclass's units) or ``max_wait_ms`` after its first request came, whichever is first; an item larger
    than ``max_batch`` runs alone. Batches run one at a time (in a worker thread unless ``in_thread`` is
    False); while one runs, the next gathers, so under load batches grow by themselves and an idle
    batcher with ``max_wait_ms=0`` adds no wait at all."""

    def __init__(self, max_batch: int, max_wait_ms: float, *, in_thread: bool = True) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self._max_batch = max_batch
        self._max_wait_s = max_wait_ms / 1000
        self._in_thread = in_thread
        self._queue: asyncio.Queue[_Request[T, R]] = asyncio.Queue()
        self._carry: _Request[T, R] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.batches_run = 0
        """How many batches ran (for metrics and tests)."""

    def _size(self, item: T) -> int:
        raise NotImplementedError

    def _execute(self, items: list[T]) -> Sequence[R | BaseException]:
        """One result or error per item, in order (runs in the worker thread)."""
        raise NotImplementedError

    async def submit(self, item: T) -> R:
        """``item``'s result, computed as part of a batch; its error is raised here."""
        size = self._size(item)
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work(), name=type(self).__name__)
        future: asyncio.Future[R] = loop.create_future()
        self._queue.put_nowait(_Request(item, size, future))
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _work(self) -> None:
        while True:
            batch = await self._gather()
            await self._run_batch(batch)

    async def _gather(self) -> list[_Request[T, R]]:
        first = self._carry or await self._queue.get()
        self._carry = None
        batch, size = [first], first.size
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while size < self._max_batch:
            request = await self._next_before(deadline)
            if request is None:
                break
            if size + request.size > self._max_batch:
                self._carry = request  # first of the next batch: requests are never split
                break
            batch.append(request)
            size += request.size
        return batch

    async def _next_before(self, deadline: float) -> _Request[T, R] | None:
        if not self._queue.empty():
            return self._queue.get_nowait()
        timeout = deadline - asyncio.get_running_loop().time()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    async def _run_batch(self, batch: list[_Request[T, R]]) -> None:
        live = [r for r in batch if not r.future.done()]  # callers that gave up are dropped
        if not live:
            return
        items = [r.item for r in live]
        self.batches_run += 1
        try:
            results = await asyncio.to_thread(self._execute, items) if self._in_thread else self._execute(items)
            if len(results) != len(live):
                raise ValueError(f"a batch of {len(live)} items returned {len(results)} results")
        except Exception as error:
            results = [error] * len(live)
        for request, result in zip(live, results, strict=True):
            if request.future.done():
                continue
            if isinstance(result, BaseException):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)


class Coalescer(_Batching[T, R]):
    """Merge concurrent :meth:`submit` calls into one ``run(items)`` of up to ``max_batch`` items.

    ``run`` returns one result per item, in order; an exception in that list fails only its own caller,
    an exception raised by ``run`` fails the whole batch. Use it where the work is batchable across
    callers (one feature read and one model run for many requests)."""

    def __init__(self, run: Callable[[list[T]], Sequence[R | BaseException]], max_batch: int, max_wait_ms: float,
                 *, in_thread: bool = True) -> None:
        super().__init__(max_batch, max_wait_ms, in_thread=in_thread)
        self._run = run

    def _size(self, item: T) -> int:
        return 1

    def _execute(self, items: list[T]) -> Sequence[R | BaseException]:
        return self._run(items)


class MicroBatcher(_Batching[Arrays, Arrays]):
    """Merge concurrent :meth:`submit` calls into one ``run`` of up to ``max_batch`` rows.

    A batch is sent when it holds ``max_batch`` rows or ``max_wait_ms`` after its first request came,
    whichever is first; a single request larger than ``max_batch`` runs alone. ``run`` is called in a
    worker thread (ONNX Runtime releases the GIL), one batch at a time; while it runs, the next batch
    gathers. An error in ``run`` is raised to every caller of that batch.
    """

    def __init__(self, run: RunFn, max_batch: int, max_wait_ms: float, *, in_thread: bool = True) -> None:
        super().__init__(max_batch, max_wait_ms, in_thread=in_thread)
        self._run = run

    def _size(self, item: Arrays) -> int:
        return _rows(item)

    def _execute(self, items: list[Arrays]) -> Sequence[Arrays]:
        outputs = self._run(_concat(items))
        return _split(outputs, [_rows(i) for i in items])


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
