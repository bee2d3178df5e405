"""Configuration of a simulation run."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime


@dataclass(frozen=True)
class SimConfig:
    """What world to build and how long to run it. The same config always yields the same stream."""

    tenants: int = 1
    """Number of tenants (workspaces)."""
    users_per_tenant: int = 50
    """People per tenant."""
    weeks: int = 1
    """Simulated weeks; events after the horizon are not emitted (their truth still is)."""
    seed: int = 0
    """Seed of every random draw (numpy ``SeedSequence``); no global random state is used."""
    start: datetime = field(default_factory=lambda: datetime(2026, 1, 5, tzinfo=UTC))
    """Start of the simulated time; moved back to the Monday 00:00 UTC of its week."""
    anomaly_user_fraction: float = 0.03
    """Share of people with one planted anomalous activity window (at least one per tenant of 10+)."""
    workflows_per_tenant: int = 4
    """Planted repeated manual workflows per tenant."""
    slip_fraction: float = 0.3
    """Share of projects that slip (hidden duration multiplier and scope creep)."""
    duplicate_fraction: float = 0.05
    """Share of tasks that are near-duplicates (paraphrases) of an earlier task."""
    utilization: float = 0.8
    """Planned work as a share of people's capacity; above ~1 queues grow without bound."""
    producer: str = "simulator"
    """Envelope producer."""

    def __post_init__(self) -> None:
        if self.tenants < 1 or self.users_per_tenant < 3 or self.weeks < 1:
            raise ValueError("need tenants >= 1, users_per_tenant >= 3 and weeks >= 1")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        for name in ("anomaly_user_fraction", "slip_fraction", "duplicate_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if not 0.05 <= self.utilization <= 1.5:
            raise ValueError("utilization must be within [0.05, 1.5]")
