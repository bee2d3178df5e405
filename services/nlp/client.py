"""A typed client of the nlp service for other services: ``await NlpClient(channel).embed(texts)`` -> an
``(n, 384)`` float32 array of unit vectors (personalization, automation); ``await .estimate_effort(tenant,
title, description)`` -> story points (timeline's effort feature).

Inside an event handler pass ``translate_errors=True`` (the default): an nlp outage raises
:class:`mesh.errors.Unavailable`, which the bus retries and holds instead of dead-lettering the event."""

from __future__ import annotations

from collections.abc import Sequence

import grpc.aio
import numpy as np
import numpy.typing as npt
from sunday.ml.v1 import nlp_pb2, nlp_pb2_grpc

from mesh.serving import DEFAULT_RETRY, RetryPolicy, call_with_retry

DEFAULT_TARGET = "127.0.0.1:50053"
MAX_TEXTS = 256


class NlpClient:
    """Embeddings and effort estimates over gRPC (both idempotent: retried on UNAVAILABLE / DEADLINE_EXCEEDED)."""

    def __init__(self, channel: grpc.aio.Channel, *, deadline_s: float = 5.0, retry: RetryPolicy = DEFAULT_RETRY,
                 translate_errors: bool = True) -> None:
        self._stub = nlp_pb2_grpc.NlpServiceStub(channel)
        self._deadline_s = deadline_s
        self._retry = retry
        self._translate = translate_errors

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One row per text (L2-normalised, 384 dims); long lists go in chunks of MAX_TEXTS."""
        rows: list[npt.NDArray[np.float32]] = []
        for start in range(0, len(texts), MAX_TEXTS):
            request = nlp_pb2.EmbedRequest(texts=list(texts[start:start + MAX_TEXTS]))
            response: nlp_pb2.EmbedResponse = await call_with_retry(
                self._stub.Embed, request, self._deadline_s, self._retry, translate_errors=self._translate)
            rows.append(np.asarray([e.values for e in response.embeddings], dtype=np.float32).reshape(-1,
                                                                                                    response.dim))
        return np.concatenate(rows) if rows else np.zeros((0, 384), dtype=np.float32)

    async def estimate_effort(self, tenant_id: str, title: str, description: str = "") -> float:
        """Predicted story points of a task from its text (Unavailable while nlp has no effort model)."""
        request = nlp_pb2.EstimateEffortRequest(tenant_id=tenant_id, title=title, description=description)
        response: nlp_pb2.EstimateEffortResponse = await call_with_retry(
            self._stub.EstimateEffort, request, self._deadline_s, self._retry, translate_errors=self._translate)
        return float(response.story_points)
