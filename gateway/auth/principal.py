"""Who is calling: the tenant always comes from the credential, never from the request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.settings import CAPABILITIES

ALL_SCOPES: tuple[str, ...] = (
    *(f"{cap}:read" for cap in CAPABILITIES),
    "automation:write",
    "anomaly:write", "anomaly:admin",
    "webhooks:read", "webhooks:write", "keys:read", "keys:write",
)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    tenant_id: str
    client_id: str
    scopes: frozenset[str]
    plan: str
    via: Literal["token", "api_key"]

    def has(self, scope: str) -> bool:
        return scope in self.scopes


def parse_scopes(raw: str | list[str] | None) -> frozenset[str]:
    items = raw.split() if isinstance(raw, str) else list(raw or [])
    return frozenset(s for s in items if s)


def unknown_scopes(scopes: frozenset[str]) -> list[str]:
    return sorted(scopes - set(ALL_SCOPES))
