"""Text embeddings from the nlp service's gRPC ``Embed`` through its typed client
(:class:`services.nlp.client.NlpClient`): the hybrid's text-similarity column (optional).

Off when no target is configured; when the nlp service is unreachable or slow the column is 0 for that
request and the client stays off for ``backoff_s`` (a recommendation never waits on a dead dependency
more than once per back-off). Embeddings are cached by text (titles repeat across requests).

The client is asynchronous (``grpc.aio``) and the recommender runs in worker threads: the client lives on
an event loop of its own (one daemon thread), and each call waits at most ``timeout_s`` for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from mesh.errors import MeshError

log = logging.getLogger(__name__)
Array = npt.NDArray[np.float64]


class NlpEmbedder:
    """``(tenant, texts) -> unit vectors | None`` over ``NlpClient.embed``."""

    def __init__(self, target: str, *, timeout_s: float = 0.2, backoff_s: float = 60.0, cache_size: int = 20_000
                 ) -> None:
        self._target = target
        self._timeout = timeout_s
        self._backoff = backoff_s
        self._cache: OrderedDict[str, Array] = OrderedDict()
        self._cache_size = cache_size
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="nlp-embed", daemon=True).start()
                self._loop = loop
            return self._loop

    async def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        if self._client is None:  # created on the client's own loop (grpc.aio channels are loop-bound)
            import grpc.aio

            from mesh.serving import RetryPolicy
            from services.nlp.client import NlpClient

            channel = grpc.aio.insecure_channel(self._target)
            self._client = NlpClient(channel, deadline_s=self._timeout, retry=RetryPolicy(max_attempts=1),
                                     translate_errors=True)
        out: npt.NDArray[np.float32] = await self._client.embed(texts)
        return out

    def __call__(self, tenant_id: str, texts: Sequence[str]) -> Array | None:
        if time.monotonic() < self._down_until:
            return None
        with self._lock:
            missing = sorted({t for t in texts if t not in self._cache})
        if missing and not self._fetch(missing):
            return None
        with self._lock:
            return np.stack([self._cache[t] for t in texts])

    def _fetch(self, texts: list[str]) -> bool:
        future = asyncio.run_coroutine_threadsafe(self._embed(texts), self._ensure_loop())
        try:
            vectors = future.result(timeout=self._timeout + 0.5)
        except (MeshError, grpc.RpcError, concurrent.futures.TimeoutError, OSError, ValueError) as exc:
            future.cancel()
            log.warning("nlp Embed at %s unavailable (%s): text similarity off for %.0fs", self._target,
                        type(exc).__name__, self._backoff)
            self._down_until = time.monotonic() + self._backoff
            return False
        with self._lock:
            for text, vec in zip(texts, vectors, strict=True):
                self._cache[text] = np.asarray(vec, dtype=np.float64)
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return True
