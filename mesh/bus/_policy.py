"""Dead-letter policy (the retry policy is mesh.retry.RetryPolicy, shared by the whole mesh)."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.config import BusSettings
from mesh.retry import RetryPolicy

__all__ = ["DeadLetterPolicy", "RetryPolicy"]


@dataclass(frozen=True)
class DeadLetterPolicy:
    """Where invalid messages go and how many in a row are tolerated."""

    topic: str = "dlq"
    """Logical topic of the dead-letter queue."""
    max_consecutive: int = 100
    """Invalid messages in a row before the consumer stops with :class:`DeadLetterCapExceeded`."""

    @classmethod
    def from_settings(cls, bus: BusSettings) -> DeadLetterPolicy:
        """A service's policy (``MESH_BUS__DLQ_MAX_CONSECUTIVE``)."""
        return cls(max_consecutive=bus.dlq_max_consecutive)
