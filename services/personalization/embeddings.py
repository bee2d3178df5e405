"""Text embeddings from the nlp service's gRPC ``Embed`` (optional): the hybrid's text-similarity column.

Off when no target is configured; when the nlp service is unreachable or slow the column is 0 for that
request and the client stays off for ``backoff_s`` (a recommendation never waits on a dead dependency
more than once per back-off). Embeddings are cached by text (titles repeat across requests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)
Array = npt.NDArray[np.float64]


class NlpEmbedder:
    """``(tenant, texts) -> unit vectors | None`` over ``sunday.ml.v1.NlpService/Embed``."""

    def __init__(self, target: str, *, timeout_s: float = 0.2, backoff_s: float = 60.0, cache_size: int = 20_000
                 ) -> None:
        self._target = target
        self._timeout = timeout_s
        self._backoff = backoff_s
        self._cache: OrderedDict[str, Array] = OrderedDict()
        self._cache_size = cache_size
        self._down_until = 0.0
        self._lock = threading.Lock()
        self._stub: Any = None

    def _client(self) -> Any:
        if self._stub is None:
            import grpc
            from sunday.ml.v1 import nlp_pb2_grpc

            self._stub = nlp_pb2_grpc.NlpServiceStub(grpc.insecure_channel(self._target))
        return self._stub

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
        import grpc
        from sunday.ml.v1 import nlp_pb2

        try:
            for i in range(0, len(texts), 256):
                chunk = texts[i:i + 256]
                reply = self._client().Embed(nlp_pb2.EmbedRequest(texts=chunk), timeout=self._timeout)
                with self._lock:
                    for text, emb in zip(chunk, reply.embeddings, strict=True):
                        self._cache[text] = np.asarray(emb.values, dtype=np.float64)
                        if len(self._cache) > self._cache_size:
                            self._cache.popitem(last=False)
        except grpc.RpcError as exc:
            log.warning("nlp Embed at %s unavailable (%s): text similarity off for %.0fs", self._target,
                        exc.code() if hasattr(exc, "code") else exc, self._backoff)
            self._down_until = time.monotonic() + self._backoff
            return False
        return True
