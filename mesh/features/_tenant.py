"""Tenant aggregate and the `tenant_features` view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pydantic import Field

from mesh.features._schema import ViewSpec
from mesh.features._state import EntityState


class TenantState(EntityState):
    kind = "tenant"

    users: dict[str, int] = Field(default_factory=dict)
    """user id -> last activity (epoch seconds; 0 = joined, never active)."""


@dataclass(frozen=True)
class TenantFeatures:
    users_total: int = 0
    active_users_1d: int = 0
    """Users active in the day before the tenant's newest event (event time, not wall-clock)."""
    active_users_7d: int = 0


def tenant_row(s: TenantState) -> TenantFeatures:
    now = s.timestamp().timestamp()
    day, week = timedelta(days=1).total_seconds(), timedelta(days=7).total_seconds()
    return TenantFeatures(
        users_total=len(s.users),
        active_users_1d=sum(1 for t in s.users.values() if t and now - t <= day),
        active_users_7d=sum(1 for t in s.users.values() if t and now - t <= week),
    )


TENANT_VIEW: ViewSpec[TenantState, TenantFeatures] = ViewSpec(
    "tenant_features", "tenant", TenantState, TenantFeatures, tenant_row, "users and active users"
)
