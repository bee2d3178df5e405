"""One retry policy for the whole mesh: data passed in, not sleep loops written by hand.

The bus retries transient handler failures with it, the gRPC client retries UNAVAILABLE calls with a
subclass that adds per-attempt timeouts and the retryable status codes, the gateway paces webhook
deliveries and consumer restarts with it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed operation is tried again."""

    max_attempts: int = 5
    """Attempts in total, the first included."""
    initial_backoff_s: float = 0.05
    """Wait before the second attempt."""
    multiplier: float = 2.0
    """Growth of the wait per attempt."""
    max_backoff_s: float = 2.0
    """Cap on one wait."""
    jitter: float = 0.2
    """Each wait is scaled by a random factor in [1 - jitter, 1 + jitter]."""

    def backoff_s(self, attempt: int) -> float:
        """Wait after failed attempt number ``attempt`` (1-based), before the next one."""
        base = min(self.initial_backoff_s * self.multiplier ** (attempt - 1), self.max_backoff_s)
        return base * random.uniform(1 - self.jitter, 1 + self.jitter)
