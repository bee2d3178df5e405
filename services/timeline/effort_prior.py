"""The effort feature of the task model read from the nlp service: predicted story points of a task from
its text, through :class:`services.nlp.client.NlpClient` (``EstimateEffort`` over gRPC). The story-point
model itself is the nlp service's (:mod:`services.nlp.effort_train`); timeline imports no text model.

:class:`NlpEffortPrior` is an :class:`~services.timeline.effort_slot.EffortPrior`: ``points(texts)`` is
synchronous (the predictor featurises in worker threads), so the calls run on a private event loop thread,
all texts of a batch concurrently, answers memoised per text. When nlp is down, slow or has no effort model
the feature is *missing*: those texts get the constant :data:`CONSTANT_POINTS` (the value a model without
the feature sees: no information, never a crash), a warning says so, and nlp is asked again after
``retry_after_s`` (not at every event while it is down).

:func:`load_effort_prior` (training, benchmarks) gives the nlp prior when nlp answers, else the constant
prior with a message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

import grpc.aio
import numpy as np
from numpy.typing import NDArray

from mesh.serving import RetryPolicy
from services.nlp.client import DEFAULT_TARGET, NlpClient
from services.timeline.effort_slot import CONSTANT_POINTS as CONSTANT_POINTS  # re-exported
from services.timeline.effort_slot import ConstantPrior as ConstantPrior
from services.timeline.effort_slot import EffortPrior as EffortPrior
from services.timeline.effort_slot import feature as feature

log = logging.getLogger(__name__)
FloatArray = NDArray[np.float64]
PRIOR_NAME = "nlp-effort"
"""Recorded in a timeline model trained with this feature; the served prior must have the same name."""
_MEMO = 50_000


class NlpEffortPrior:
    """Story points per task text from the nlp service (see the module docstring)."""

    def __init__(self, target: str = DEFAULT_TARGET, *, deadline_s: float = 2.0, retry_after_s: float = 30.0,
                 concurrency: int = 16) -> None:
        self._target = target
        self._deadline_s = deadline_s
        self._retry_after_s = retry_after_s
        self._concurrency = concurrency
        self._memo: dict[str, float] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._channel: grpc.aio.Channel | None = None
        self._client: NlpClient | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nlp-effort", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return PRIOR_NAME

    @property
    def available(self) -> bool:
        """False while the last call failed (within ``retry_after_s``)."""
        return time.monotonic() >= self._down_until

    async def _fetch(self, texts: Sequence[str]) -> dict[str, float]:
        if self._client is None:
            self._channel = grpc.aio.insecure_channel(self._target)
            self._client = NlpClient(self._channel, deadline_s=self._deadline_s,
                                     retry=RetryPolicy(max_attempts=2), translate_errors=False)
        client, gate = self._client, asyncio.Semaphore(self._concurrency)

        async def one(text: str) -> float:
            async with gate:
                return await client.estimate_effort("", text)

        points = await asyncio.gather(*(one(t) for t in texts))
        return dict(zip(texts, (max(p, 0.0) for p in points), strict=True))

    def points(self, texts: Sequence[str]) -> FloatArray:
        with self._lock:
            todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo and self.available:
            future = asyncio.run_coroutine_threadsafe(self._fetch(todo), self._loop)
            try:
                got = future.result(timeout=self._deadline_s * 2 + 1)
            except Exception as exc:  # down, slow, no model: the feature is missing, the forecast goes on
                future.cancel()
                self._down_until = time.monotonic() + self._retry_after_s
                log.warning("effort feature missing for %d task(s) (the constant %.1f points) and for the next "
                            "%.0f s: nlp EstimateEffort at %s failed: %s", len(todo), CONSTANT_POINTS,
                            self._retry_after_s, self._target, _reason(exc))
            else:
                with self._lock:
                    if len(self._memo) + len(got) > _MEMO:
                        self._memo.clear()
                    self._memo.update(got)
        with self._lock:
            return np.asarray([self._memo.get(t, CONSTANT_POINTS) for t in texts], dtype=np.float64)

    def close(self) -> None:
        if self._channel is not None:
            asyncio.run_coroutine_threadsafe(self._channel.close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return type(exc).__name__ if not str(exc) else f"{type(exc).__name__}: {exc}"


def load_effort_prior(target: str = DEFAULT_TARGET) -> EffortPrior:
    """The nlp service's effort estimates when it answers at ``target``, else a :class:`ConstantPrior` and a
    message (start nlp with an effort model: ``python -m services.nlp.effort_train``)."""
    prior = NlpEffortPrior(target)
    prior.points(["probe"])
    if prior.available:
        return prior
    prior.close()
    log.warning("effort prior skipped: the nlp service at %s gives no effort estimates; the effort feature is "
                "the constant %.1f", target, CONSTANT_POINTS)
    return ConstantPrior()
