"""Errors of the bus. Each says whether it is retryable."""

from __future__ import annotations


class BusError(RuntimeError):
    retryable = False


class BrokerUnavailable(BusError):
    """The broker could not be reached within the configured time (bad address, down)."""


class PublishError(BusError):
    """A record could not be delivered; nothing is dropped silently."""


class TransientError(Exception):
    """Raised by a handler for a failure worth retrying (a timeout, a dependency restarting)."""

    retryable = True


class DeadLetterCapExceeded(BusError):
    """Too many invalid messages in a row: the consumer stops loudly rather than drain a topic into the DLQ."""


class RetriesExhausted(BusError):
    """A transient failure outlived the retry policy; the offset is not committed and the consumer stops."""
