"""gRPC client helpers: an instrumented channel and retries driven by a policy object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.trace import TracerProvider

from mesh.errors import MeshError, Unavailable
from mesh.retry import RetryPolicy as BaseRetryPolicy
from mesh.serving._interceptor import STATUS_CODES

log = logging.getLogger(__name__)

ResponseT = TypeVar("ResponseT")
Metadata = Sequence[tuple[str, str | bytes]]


def channel(
    target: str,
    *,
    options: Sequence[tuple[str, Any]] = (),
    tracer_provider: TracerProvider | None = None,
) -> grpc.aio.Channel:
    """An insecure (in-cluster) aio channel whose calls carry the trace context."""
    interceptors = aio_client_interceptors(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    return grpc.aio.insecure_channel(target, options=list(options), interceptors=interceptors)


def _default_codes() -> frozenset[grpc.StatusCode]:
    return frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


@dataclass(frozen=True)
class RetryPolicy(BaseRetryPolicy):
    """How :func:`call_with_retry` retries. Only idempotent calls should be retried."""

    max_attempts: int = 4
    """attempts in all, the first included"""
    attempt_timeout_s: float | None = None
    """timeout of one attempt (never past the overall deadline); None: all the time that is left"""
    retryable_codes: frozenset[grpc.StatusCode] = field(default_factory=_default_codes)
    """status codes worth another attempt"""


DEFAULT_RETRY = RetryPolicy()


async def call_with_retry(
    method: Callable[..., Awaitable[ResponseT]],
    request: Any,
    deadline_s: float,
    policy: RetryPolicy = DEFAULT_RETRY,
    *,
    metadata: Metadata | None = None,
    translate_errors: bool = False,
) -> ResponseT:
    """Call a unary stub method within ``deadline_s`` in all, retrying the policy's codes with backoff.

    Raises the last ``grpc.aio.AioRpcError`` when out of attempts or time, or at once for other codes.
    With ``translate_errors`` (callers inside an event handler), raises domain errors instead: an outage
    (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) as :class:`mesh.errors.Unavailable`, which the bus
    retries and holds; NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED as theirs (dead-lettered).
    """
    if translate_errors:
        try:
            return await call_with_retry(method, request, deadline_s, policy, metadata=metadata)
        except grpc.aio.AioRpcError as error:
            raise _translated(error) from error

    loop = asyncio.get_running_loop()
    deadline = loop.time() + deadline_s
    for attempt in range(1, policy.max_attempts + 1):
        remaining = deadline - loop.time()
        timeout = remaining if policy.attempt_timeout_s is None else min(remaining, policy.attempt_timeout_s)
        try:
            return await method(request, timeout=max(timeout, 0.0), metadata=metadata)
        except grpc.aio.AioRpcError as error:
            delay = policy.backoff_s(attempt)
            if (error.code() not in policy.retryable_codes or attempt == policy.max_attempts
                    or loop.time() + delay >= deadline):
                raise
            log.info("attempt %d failed with %s; retrying in %.3f s", attempt, error.code().name, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable: the last attempt returns or raises")


_OUTAGE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                           grpc.StatusCode.RESOURCE_EXHAUSTED})


def _translated(error: grpc.aio.AioRpcError) -> Exception:
    if error.code() in _OUTAGE_CODES:
        return Unavailable(f"gRPC {error.code().name}: {error.details() or ''}")
    return domain_error(error) or error


def domain_error(error: grpc.aio.AioRpcError) -> MeshError | None:
    """The domain error a status code stands for (the reverse of the server mapping), or None."""
    for kind, code in STATUS_CODES:
        if error.code() == code:
            return kind(error.details() or "")
    return None
