"""gRPC clients of the services, and the ONE mapping of their status codes to problem details.

mesh.serving (the shared gRPC helpers) did not exist yet when this was written, so the channels are made
here with grpc.aio directly. No retries here: the gateway answers 503 with Retry-After and the caller
(the SDK) retries, so a slow backend is not hammered by two layers of retries.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from sunday.ml.v1 import assignment_pb2_grpc, timeline_pb2_grpc

from gateway.problems import ProblemError, not_found, unavailable
from gateway.settings import BackendSettings

T = TypeVar("T")


@dataclass
class Backends:
    """Stubs of the deployed services; ``None`` when a service has no target configured."""

    settings: BackendSettings
    assignment: assignment_pb2_grpc.AssignmentServiceStub | None = None
    timeline: timeline_pb2_grpc.TimelineServiceStub | None = None
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    @classmethod
    def connect(cls, settings: BackendSettings) -> Backends:
        """Channels connect lazily: an unreachable service shows up as 503 on its routes only."""
        backends = cls(settings)
        if settings.assignment:
            backends.assignment = assignment_pb2_grpc.AssignmentServiceStub(backends._channel(settings.assignment))
        if settings.timeline:
            backends.timeline = timeline_pb2_grpc.TimelineServiceStub(backends._channel(settings.timeline))
        return backends

    def _channel(self, target: str) -> grpc.aio.Channel:
        channel = grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors())  # type: ignore[no-untyped-call]
        self.channels.append(channel)
        return channel

    async def close(self) -> None:
        for channel in self.channels:
            await channel.close()

    async def call(self, capability: str, what: str, call: Awaitable[T]) -> T:
        """Await a stub call, mapping its failure to a problem. ``what`` names the entity for 404s."""
        try:
            return await call
        except grpc.aio.AioRpcError as err:
            raise self._problem(capability, what, err) from None

    def _problem(self, capability: str, what: str, err: grpc.aio.AioRpcError) -> ProblemError:
        code = err.code()
        if code == grpc.StatusCode.NOT_FOUND:
            # Another tenant's id and a missing id read the same: nothing about other tenants leaks.
            return not_found(what)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return ProblemError(422, "invalid-argument", "Invalid request", err.details() or None)
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            return ProblemError(409, "failed-precondition", "Conflict", err.details() or None)
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return ProblemError(403, "forbidden", "Forbidden", "not allowed")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return ProblemError(429, "too-many-requests", "Too Many Requests", f"{capability} is overloaded",
                                retry_after_s=self.settings.retry_after_s)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
            return unavailable(f"the {capability} service is unavailable", self.settings.retry_after_s)
        # INTERNAL, UNKNOWN, ...: the service's message stays in its own log.
        return ProblemError(502, "bad-gateway", "Bad Gateway", f"the {capability} service failed")


def not_deployed(capability: str, retry_after_s: int) -> ProblemError:
    return unavailable(f"the {capability} service is not reachable yet", retry_after_s)
