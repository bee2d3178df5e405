"""Errors of the bus. Each says whether it is retryable (see :mod:`mesh.bus._classify`)."""

from __future__ import annotations


class BusError(RuntimeError):
    retryable = False


class BrokerUnavailable(BusError):
    """The broker could not be reached within the configured time (bad address, down)."""

    retryable = True


class PublishError(BusError):
    """A record could not be delivered; nothing is dropped silently.

    ``retryable`` is True when every failure was a timeout or a broker outage (the same records may be
    delivered later), False for a rejection (record too large, topic unknown, authorization)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class TransientError(Exception):
    """Raised by a handler for a failure worth retrying (a timeout, a dependency restarting)."""

    retryable = True


class PermanentError(Exception):
    """Raised by a handler for an event it can never handle (the event goes to the DLQ, with this message)."""

    retryable = False


class DeadLetterCapExceeded(BusError):
    """Too many invalid messages in a row: the consumer stops loudly rather than drain a topic into the DLQ."""
