"""The one place that decides what a failure means for the message being handled.

- **permanent**: the message can never be handled: undecodable or invalid (:class:`InvalidEvent`), declared
  so by the handler (:class:`PermanentError`, a non-retryable :class:`mesh.errors.MeshError` such as
  ``InvalidArgument``), or an exception type nobody declared (a bug in handler code). It goes to the DLQ
  with the reason (and, for a bug, the traceback summary); the consecutive-DLQ cap stops a consumer whose
  every message fails.
- **transient**: the infrastructure failed, not the message (:func:`mesh.errors.is_transient`: Redis/Feast
  connection errors and timeouts, gRPC UNAVAILABLE/DEADLINE_EXCEEDED/RESOURCE_EXHAUSTED, Kafka timeouts and
  broker outages, MLflow unreachable, a model not loaded yet, :class:`TransientError`, any error with
  ``retryable = True``). It is retried, and past the retry policy the consumer holds the batch (partitions
  paused, lag grows) until it succeeds: never dead-lettered, never fatal.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from mesh.errors import is_transient
from mesh.events import InvalidEvent

_TRACEBACK_FRAMES = 4
"""Innermost frames kept in the DLQ reason of a bug (enough to find the line, short enough for a header)."""


@dataclass(frozen=True)
class Failure:
    """What went wrong and what the runner does about it."""

    transient: bool
    """Retry (and hold the batch past the policy) rather than dead-letter."""
    reason: str
    """For the DLQ header and the logs: ``Type: message`` (and the traceback summary for bugs)."""
    kind: str
    """Short label for spans: ``invalid``, ``declared``, ``bug`` (permanent) or ``transient``."""
    error: str
    """The exception's type name (a metric label: low cardinality)."""


def classify(exc: BaseException) -> Failure:
    """Classify one exception raised while handling (or settling) a message."""
    name = type(exc).__name__
    summary = f"{name}: {exc}"
    if isinstance(exc, InvalidEvent):
        return Failure(False, str(exc), "invalid", name)
    if is_transient(exc):
        return Failure(True, summary, "transient", name)
    if isinstance(getattr(exc, "retryable", None), bool):  # PermanentError, InvalidArgument, NotFound, ...
        return Failure(False, summary, "declared", name)
    return Failure(False, f"{summary} [{_where(exc)}]", "bug", name)


def _where(exc: BaseException) -> str:
    """The innermost frames of the traceback, one ``file:line in function`` each."""
    frames = traceback.extract_tb(exc.__traceback__)[-_TRACEBACK_FRAMES:]
    return " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name}" for f in reversed(frames))
