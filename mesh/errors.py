"""Domain errors shared by the whole mesh.

Core code raises these; the transport adapters map them to wire codes in ONE place each (the gRPC
server interceptor in :mod:`mesh.serving`, the gateway's HTTP handlers). The message of a domain error
is meant for the caller and is sent over the wire; any other exception is reported as a generic
internal error and its message stays in the server log.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any, ClassVar, ParamSpec, TypeVar


class MeshError(Exception):
    """Base of all domain errors. ``retryable`` says whether the same call may succeed later."""

    retryable: ClassVar[bool] = False


class NotFound(MeshError):
    """The thing asked for does not exist (or is not visible to this caller)."""


class InvalidArgument(MeshError):
    """The request is malformed or violates a precondition on its content; retrying will not help."""


class PermissionDenied(MeshError):
    """The caller is known but not allowed to do this."""


class FailedPrecondition(MeshError):
    """The system is not in the state the request assumed (e.g. a stale version in an optimistic update):
    re-read, then decide again; retrying the same request will not help."""


class Unavailable(MeshError):
    """A dependency (model, feature store, broker) is not available right now; retry with backoff."""

    retryable: ClassVar[bool] = True


# --------------------------------------------------------------------------- infrastructure failures
# The library errors that mean "a dependency is down or slow right now", not "this input is bad". Checked
# by module name through sys.modules so that this module imports none of those libraries: an error of a
# library that was never imported cannot occur.
_GRPC_TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})
_KAFKA_TRANSIENT = frozenset({"_MSG_TIMED_OUT", "_TIMED_OUT", "_TRANSPORT", "_ALL_BROKERS_DOWN", "_WAIT_COORD",
                              "REQUEST_TIMED_OUT", "NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE",
                              "COORDINATOR_LOAD_IN_PROGRESS", "LEADER_NOT_AVAILABLE", "NOT_LEADER_FOR_PARTITION",
                              "NOT_ENOUGH_REPLICAS", "NETWORK_EXCEPTION", "REBALANCE_IN_PROGRESS"})


def _redis_transient(exc: BaseException) -> bool:
    module = sys.modules.get("redis.exceptions")
    # BusyLoadingError (a restarted server loading its AOF) is a ConnectionError subclass; ReadOnly and
    # TryAgain are what a fail-over answers for a moment.
    return module is not None and isinstance(exc, (module.ConnectionError, module.TimeoutError,
                                                   module.ReadOnlyError, module.TryAgainError))


def _grpc_transient(exc: BaseException) -> bool:
    grpc = sys.modules.get("grpc")
    if grpc is None or not isinstance(exc, grpc.RpcError) or not callable(getattr(exc, "code", None)):
        return False
    code = exc.code()
    return getattr(code, "name", None) in _GRPC_TRANSIENT


def _kafka_transient(exc: BaseException) -> bool:
    kafka = sys.modules.get("confluent_kafka")
    if kafka is None or not isinstance(exc, kafka.KafkaException) or not exc.args:
        return False
    err = exc.args[0]
    if not isinstance(err, kafka.KafkaError) or err.fatal():
        return False
    return bool(err.retriable()) or err.name() in _KAFKA_TRANSIENT


def _http_transient(exc: BaseException) -> bool:
    """The HTTP clients under MLflow (requests) and the webhooks (httpx): connection refused, timeouts."""
    requests = sys.modules.get("requests.exceptions")
    if requests is not None and isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    httpx = sys.modules.get("httpx")
    return httpx is not None and isinstance(exc, (httpx.TransportError,))


def _infra_transient(exc: BaseException) -> bool:
    """One exception (not its causes) is an infrastructure failure worth retrying."""
    if isinstance(exc, (ConnectionError, TimeoutError)):  # the builtins: sockets, asyncio and futures timeouts
        return True
    return _redis_transient(exc) or _grpc_transient(exc) or _kafka_transient(exc) or _http_transient(exc)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is worth retrying later: an error that says so (``retryable = True``, e.g.
    :class:`Unavailable`, ``mesh.bus.TransientError``), or an infrastructure failure (Redis/Feast connection
    errors and timeouts, gRPC UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED, Kafka timeouts and broker
    outages, HTTP connection errors under MLflow), itself or as the cause of the error raised (MLflow and Feast
    wrap the library error they got)."""
    declared = getattr(exc, "retryable", None)
    if isinstance(declared, bool):
        return declared  # an error that says what it is is believed, even when caused by an outage
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if _infra_transient(current):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


P = ParamSpec("P")
R = TypeVar("R")


class translate_infra_errors:  # lower case: used as a context manager and a decorator, like contextlib's
    """Store adapters wrap their library calls in this: infrastructure failures (see :func:`is_transient`)
    come out as :class:`Unavailable` (cause kept), so callers and the bus runner see one retryable error
    type and handlers never catch a library's exceptions.

    ``with translate_infra_errors("redis dedupe"): ...`` or ``@translate_infra_errors("feast online read")``.
    """

    def __init__(self, what: str) -> None:
        self._what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> None:
        if exc is not None and not isinstance(exc, MeshError) and isinstance(exc, Exception) and is_transient(exc):
            raise Unavailable(f"{self._what}: {type(exc).__name__}: {exc}") from exc

    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]:
        what = self._what
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                with translate_infra_errors(what):
                    return await fn(*args, **kwargs)

            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with translate_infra_errors(what):
                return fn(*args, **kwargs)

        return wrapper


__all__ = ["FailedPrecondition", "InvalidArgument", "MeshError", "NotFound", "PermissionDenied", "Unavailable",
           "is_transient", "translate_infra_errors"]
