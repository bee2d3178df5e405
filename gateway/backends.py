"""gRPC clients of the services, and the ONE mapping of their failures to problem details.

A few long-lived channels per backend (``BackendSettings.channels_per_target``, used round robin;
``mesh.serving.channel``: trace context on every call), opened at start and closed at shutdown. Every
call runs under the configured deadline and retries only UNAVAILABLE, a bounded number of times within
that same deadline: UNAVAILABLE means the request never reached a servicer (connection refused, a pod
going away), and the calls that write are safe to repeat anyway (a repeated approve/reject returns the
suggestion as decided; a recommendation carries a request id that gets the same slate). The SDK retries
503 with Retry-After on top; keeping the gateway's attempts few and its deadline fixed keeps the two
layers from multiplying into a retry storm.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import grpc
import grpc.aio
from sunday.ml.v1 import (
    anomaly_pb2_grpc,
    assignment_pb2_grpc,
    automation_pb2_grpc,
    nlp_pb2_grpc,
    personalization_pb2_grpc,
    timeline_pb2_grpc,
)

from gateway.metrics import BACKEND_RETRIES
from gateway.problems import ProblemError, not_found, unavailable
from gateway.settings import BackendSettings
from mesh.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from mesh.serving import RetryPolicy, call_with_retry, channel, domain_error

T = TypeVar("T")
S = TypeVar("S")

_STILL_UNAVAILABLE = (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def retry_policy(settings: BackendSettings) -> RetryPolicy:
    return RetryPolicy(max_attempts=settings.retry_max_attempts, initial_backoff_s=settings.retry_initial_backoff_s,
                       max_backoff_s=settings.retry_max_backoff_s,
                       retryable_codes=frozenset({grpc.StatusCode.UNAVAILABLE}))


class StubPool(Generic[T]):
    """Stubs of one service over several channels, handed out round robin."""

    def __init__(self, stubs: list[T]) -> None:
        self._stubs = stubs
        self._next = itertools.cycle(stubs)

    def get(self) -> T:
        return next(self._next)

    def __len__(self) -> int:
        return len(self._stubs)


@dataclass
class Backends:
    """Stubs of the deployed services; ``None`` when a service has no target configured."""

    settings: BackendSettings
    assignments: StubPool[assignment_pb2_grpc.AssignmentServiceStub] | None = None
    timelines: StubPool[timeline_pb2_grpc.TimelineServiceStub] | None = None
    nlps: StubPool[nlp_pb2_grpc.NlpServiceStub] | None = None
    personalizations: StubPool[personalization_pb2_grpc.PersonalizationServiceStub] | None = None
    automations: StubPool[automation_pb2_grpc.AutomationServiceStub] | None = None
    anomalies: StubPool[anomaly_pb2_grpc.AnomalyServiceStub] | None = None
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    policy: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def connect(cls, settings: BackendSettings) -> Backends:
        """Channels connect lazily: an unreachable service shows up as 503 on its routes only."""
        backends = cls(settings, policy=retry_policy(settings))
        if settings.assignment:
            backends.assignments = backends._pool(settings.assignment, assignment_pb2_grpc.AssignmentServiceStub)
        if settings.timeline:
            backends.timelines = backends._pool(settings.timeline, timeline_pb2_grpc.TimelineServiceStub)
        if settings.nlp:
            backends.nlps = backends._pool(settings.nlp, nlp_pb2_grpc.NlpServiceStub)
        if settings.personalization:
            backends.personalizations = backends._pool(settings.personalization,
                                                       personalization_pb2_grpc.PersonalizationServiceStub)
        if settings.automation:
            backends.automations = backends._pool(settings.automation, automation_pb2_grpc.AutomationServiceStub)
        if settings.anomaly:
            backends.anomalies = backends._pool(settings.anomaly, anomaly_pb2_grpc.AnomalyServiceStub)
        return backends

    @property
    def assignment(self) -> assignment_pb2_grpc.AssignmentServiceStub | None:
        return self.assignments.get() if self.assignments else None

    @property
    def timeline(self) -> timeline_pb2_grpc.TimelineServiceStub | None:
        return self.timelines.get() if self.timelines else None

    @property
    def nlp(self) -> nlp_pb2_grpc.NlpServiceStub | None:
        return self.nlps.get() if self.nlps else None

    @property
    def personalization(self) -> personalization_pb2_grpc.PersonalizationServiceStub | None:
        return self.personalizations.get() if self.personalizations else None

    @property
    def automation(self) -> automation_pb2_grpc.AutomationServiceStub | None:
        return self.automations.get() if self.automations else None

    @property
    def anomaly(self) -> anomaly_pb2_grpc.AnomalyServiceStub | None:
        return self.anomalies.get() if self.anomalies else None

    def _pool(self, target: str, stub: Callable[[grpc.aio.Channel], S]) -> StubPool[S]:
        stubs = []
        for _ in range(self.settings.channels_per_target):
            # a local subchannel pool: each channel its own connection (by default gRPC shares one among them)
            opened = channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
            self.channels.append(opened)
            stubs.append(stub(opened))
        return StubPool(stubs)

    async def close(self) -> None:
        for opened in self.channels:
            await opened.close()

    async def call(self, capability: str, what: str, method: Callable[..., Awaitable[T]], request: Any) -> T:
        """``method(request)`` under the deadline and retry policy; a failure becomes a problem.

        ``what`` names the entity for 404s.
        """
        attempts = 0

        async def counted(req: Any, **kwargs: Any) -> T:
            nonlocal attempts
            attempts += 1
            return await method(req, **kwargs)

        try:
            return await call_with_retry(counted, request, self.settings.timeout_s, self.policy)
        except grpc.aio.AioRpcError as err:
            raise problem_for(capability, what, err, self.settings.retry_after_s) from None
        finally:
            if attempts > 1:
                BACKEND_RETRIES.labels(capability).inc()


def problem_for(capability: str, what: str, err: grpc.aio.AioRpcError, retry_after_s: int) -> ProblemError:
    """The problem a failed call answers with, through the domain error its status code stands for."""
    error = domain_error(err)
    if isinstance(error, NotFound):
        # Another tenant's id and a missing id read the same: nothing about other tenants leaks.
        return not_found(what)
    if isinstance(error, InvalidArgument):
        return ProblemError(422, "invalid-argument", "Invalid request", str(error) or None)
    if isinstance(error, PermissionDenied):
        return ProblemError(403, "forbidden", "Forbidden", "not allowed")
    if isinstance(error, Unavailable) or err.code() in _STILL_UNAVAILABLE:
        return unavailable(f"the {capability} service is unavailable", retry_after_s)
    if err.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED):
        return ProblemError(409, "failed-precondition", "Conflict", err.details() or None)
    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ProblemError(429, "too-many-requests", "Too Many Requests", f"{capability} is overloaded",
                            retry_after_s=retry_after_s)
    # INTERNAL, UNKNOWN, ...: the service's message stays in its own log.
    return ProblemError(502, "bad-gateway", "Bad Gateway", f"the {capability} service failed")


def not_deployed(capability: str, retry_after_s: int) -> ProblemError:
    return unavailable(f"the {capability} service is not reachable yet", retry_after_s)
