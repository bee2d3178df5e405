"""Aggregate state per entity (tenant + id), the source of every online and offline feature row, and of
every service's private state.

State is a pydantic model, stored as JSON. Two kinds of update keep it independent of arrival order:
commutative ones (counters, maxima, maps keyed by task) and last-writer-wins fields guarded by a
stamp (event time in microseconds, then event id as a deterministic tie-break). An older event can
therefore never overwrite a value set by a newer one, whatever order events arrive in.

A family of aggregates is a :class:`Reducers` table: event type -> reducer(ctx, env), where the reducer
reads and changes states through ``ctx.txn``. The mesh's entity features are one table
(``mesh.features.ENTITY_REDUCERS``); a service declares its own next to the service (its own
:class:`EntityState` subclasses, with their own ``kind``) and applies it through the same stores
(``RedisAggregates(client, namespace, reducers=MY_TABLE)``), which make every apply atomic with the
event ids it applied: effects exactly once under redelivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar, NamedTuple, Protocol, TypeVar

from pydantic import BaseModel, Field

from mesh.events import Envelope, occurred_at

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


class Ctx(NamedTuple):
    """What a reducer gets besides the event: the transaction, the event's tenant, time and stamp (a named
    tuple: one is built per event)."""

    txn: Txn
    tenant: str
    at: datetime
    stamp: Stamp


Reducer = Callable[[Ctx, Envelope], None]
Prefetch = Callable[[Envelope], Iterable[tuple[type[EntityState], str]]]
"""(state type, state key) an event's reducer will most likely read: loaded in one round trip per batch."""


def _nothing(env: Envelope) -> Iterable[tuple[type[EntityState], str]]:
    return ()


@dataclass(frozen=True)
class Reducers:
    """A family of aggregates: event type -> reducer. Event types not in the table change nothing.

    Reducers must be order-independent (commutative updates, or last-writer-wins through
    :meth:`EntityState.newer`) so that a replay in any order, or a redelivery interleaved with newer
    events, ends in the same state; the stores make each event's effect happen once.
    """

    name: str
    """Names the family in logs and docs (``"features"``, ``"assignment"``)."""
    table: Mapping[str, Reducer]
    prefetch: Prefetch = field(default=_nothing)

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self.table)

    def reduce(self, txn: Txn, env: Envelope) -> None:
        """Apply one event to the aggregates it touches."""
        reducer = self.table.get(env.type)
        if reducer is not None:
            at = occurred_at(env)
            reducer(Ctx(txn, env.tenant_id, at, stamp_of(at, env.event_id)), env)
