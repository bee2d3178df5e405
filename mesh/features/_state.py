"""Aggregate state per entity (tenant + id), the source of every online and offline feature row.

State is a pydantic model, stored as JSON. Two kinds of update keep it independent of arrival order:
commutative ones (counters, maxima, maps keyed by task) and last-writer-wins fields guarded by a
stamp (event time in microseconds, then event id as a deterministic tie-break). An older event can
therefore never overwrite a value set by a newer one, whatever order events arrive in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar, Protocol, TypeVar

from pydantic import BaseModel, Field

Stamp = tuple[int, str]
"""(event time in microseconds since the epoch, event id)."""


def stamp_of(at: datetime, event_id: str) -> Stamp:
    return (int(at.timestamp() * 1_000_000), event_id)


class EntityState(BaseModel):
    """Base of every aggregate. `as_of` is the newest event time that changed it (the row's timestamp)."""

    kind: ClassVar[str] = ""

    tenant_id: str
    entity_id: str = ""
    as_of: datetime | None = None
    stamps: dict[str, Stamp] = Field(default_factory=dict)

    def key(self) -> str:
        return state_key(self.kind, self.tenant_id, self.entity_id)

    def newer(self, name: str, stamp: Stamp) -> bool:
        """True (and remember `stamp`) when `stamp` is not older than the last write of field `name`."""
        current = self.stamps.get(name)
        if current is not None and tuple(current) > stamp:
            return False
        self.stamps[name] = stamp
        return True

    def touch(self, at: datetime) -> None:
        if self.as_of is None or at > self.as_of:
            self.as_of = at

    def timestamp(self) -> datetime:
        return self.as_of or datetime(1970, 1, 1, tzinfo=UTC)


def state_key(kind: str, tenant_id: str, entity_id: str) -> str:
    return f"{kind}:{tenant_id}:{entity_id}"


S = TypeVar("S", bound=EntityState)


class Txn(Protocol):
    """Read-modify-write access to aggregates inside one atomic apply."""

    def get(self, state_type: type[S], tenant_id: str, entity_id: str) -> S:
        """The current state (a fresh default when the entity is unknown)."""
        ...

    def put(self, state: EntityState) -> None:
        """Mark `state` changed: it is written, and its rows pushed, when the apply commits."""
        ...
