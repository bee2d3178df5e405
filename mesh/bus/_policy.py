"""Retry and dead-letter policies: data passed in, not sleep loops written by hand."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How a handler's :class:`TransientError` is retried."""

    max_attempts: int = 5
    """Attempts in total, the first included."""
    initial_backoff_s: float = 0.05
    """Wait before the second attempt."""
    multiplier: float = 2.0
    """Growth of the wait per attempt."""
    max_backoff_s: float = 2.0
    """Cap on one wait."""
    jitter: float = 0.2
    """Fraction of random spread around each wait."""

    def backoff_s(self, attempt: int) -> float:
        """Wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (attempt - 1))
        return base * (1 + self.jitter * (2 * random.random() - 1))


@dataclass(frozen=True)
class DeadLetterPolicy:
    """Where invalid messages go and how many in a row are tolerated."""

    topic: str = "dlq"
    """Logical topic of the dead-letter queue."""
    max_consecutive: int = 100
    """Invalid messages in a row before the consumer stops with :class:`DeadLetterCapExceeded`."""
