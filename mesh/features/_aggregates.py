"""Where aggregate state lives: Redis (the stack) or memory (SQLite setups, tests, offline rebuilds).

`apply(events)` is atomic per batch and idempotent: events whose id was already applied are skipped,
and the event ids are recorded in the same transaction as the state they changed (Redis: WATCH/MULTI
over the event-id keys and every state read, retried on conflict).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from mesh.events import Envelope
from mesh.features._reduce import reduce_event
from mesh.features._state import EntityState, state_key

S = TypeVar("S", bound=EntityState)
Loader = Callable[[list[str]], list[bytes | None]]


@dataclass(frozen=True)
class Applied:
    """What one apply did."""

    applied: int
    duplicates: int
    changed: tuple[EntityState, ...]
    """Final state of every entity the batch changed."""


class AggregateStore(Protocol):
    """Port for aggregate state."""

    def apply(self, events: Sequence[Envelope]) -> Applied: ...

    def load(self, state_type: type[S], tenant_id: str, entity_id: str) -> S | None: ...

    def keys(self, kind: str) -> list[str]:
        """State keys (``kind:tenant:id``) of every entity of `kind`."""
        ...


class BufferTxn:
    """Reads through a loader once per key, buffers writes until commit."""

    def __init__(self, loader: Loader) -> None:
        self._loader = loader
        self._cache: dict[str, EntityState] = {}
        self.dirty: dict[str, EntityState] = {}

    def prefetch(self, pairs: Iterable[tuple[type[EntityState], str]]) -> None:
        todo = {key: t for t, key in pairs if key not in self._cache}
        for (key, state_type), raw in zip(todo.items(), self._loader(list(todo)), strict=True):
            self._cache[key] = _decode(state_type, key, raw)

    def get(self, state_type: type[S], tenant_id: str, entity_id: str) -> S:
        key = state_key(state_type.kind, tenant_id, entity_id)
        if key not in self._cache:
            self._cache[key] = _decode(state_type, key, self._loader([key])[0])
        state = self._cache[key]
        assert isinstance(state, state_type)
        return state

    def put(self, state: EntityState) -> None:
        self.dirty[state.key()] = state


def _decode(state_type: type[S], key: str, raw: bytes | None) -> S:
    if raw is None:
        _, tenant_id, entity_id = key.split(":", 2)
        return state_type(tenant_id=tenant_id, entity_id=entity_id)
    return state_type.model_validate_json(raw)


def _run(txn: BufferTxn, events: Sequence[Envelope], already: Sequence[bool]) -> list[Envelope]:
    """Reduce the events not applied before (nor earlier in the batch); return them."""
    txn.prefetch(pair for env in events for pair in _likely_keys(env))
    fresh: list[Envelope] = []
    ids: set[str] = set()
    for env, seen in zip(events, already, strict=True):
        if seen or env.event_id in ids:
            continue
        ids.add(env.event_id)
        reduce_event(txn, env)
        fresh.append(env)
    return fresh


def _likely_keys(env: Envelope) -> list[tuple[type[EntityState], str]]:
    # Fetch in one round trip what the reducers will most likely read; anything else loads lazily.
    from mesh.features._project import ProjectState
    from mesh.features._task import TaskState

    field = env.WhichOneof("payload") or ""
    payload: Any = getattr(env, field) if field else None
    out: list[tuple[type[EntityState], str]] = []
    if payload is not None and hasattr(payload, "task_id"):
        out.append((TaskState, state_key("task", env.tenant_id, payload.task_id)))
    project_id = str(getattr(payload, "project_id", "") or "")
    if project_id:
        out.append((ProjectState, state_key("project", env.tenant_id, project_id)))
    return out


class InMemoryAggregates:
    """Aggregates in a dict (JSON, so snapshots never alias live state)."""

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def apply(self, events: Sequence[Envelope]) -> Applied:
        with self._lock:
            txn = BufferTxn(lambda keys: [self._data.get(k) for k in keys])
            fresh = _run(txn, events, [env.event_id in self._seen for env in events])
            for key, state in txn.dirty.items():
                self._data[key] = state.model_dump_json().encode()
            self._seen.update(env.event_id for env in fresh)
        return Applied(len(fresh), len(events) - len(fresh), tuple(txn.dirty.values()))

    def load(self, state_type: type[S], tenant_id: str, entity_id: str) -> S | None:
        raw = self._data.get(state_key(state_type.kind, tenant_id, entity_id))
        return None if raw is None else state_type.model_validate_json(raw)

    def keys(self, kind: str) -> list[str]:
        return sorted(k for k in self._data if k.startswith(f"{kind}:"))


class RedisAggregates:
    """Aggregates in Redis under `namespace`; one optimistic transaction per batch."""

    def __init__(self, client: Any, namespace: str, *, seen_ttl_s: int = 30 * 24 * 3600) -> None:
        self._r = client
        self._ns = namespace
        self._ttl = seen_ttl_s

    def _k(self, key: str) -> str:
        return f"{self._ns}:agg:{key}"

    def _seen(self, event_id: str) -> str:
        return f"{self._ns}:seen:{event_id}"

    def apply(self, events: Sequence[Envelope]) -> Applied:
        if not events:
            return Applied(0, 0, ())
        result: Applied = self._r.transaction(lambda pipe: self._body(pipe, events), value_from_callable=True)
        return result

    def _body(self, pipe: Any, events: Sequence[Envelope]) -> Applied:
        seen_keys = [self._seen(env.event_id) for env in events]
        pipe.watch(*seen_keys)
        already = [flag is not None for flag in pipe.mget(seen_keys)]

        def loader(keys: list[str]) -> list[bytes | None]:
            if not keys:
                return []
            full = [self._k(k) for k in keys]
            pipe.watch(*full)
            values: list[bytes | None] = pipe.mget(full)
            return values

        txn = BufferTxn(loader)
        fresh = _run(txn, events, already)
        pipe.multi()
        for key, state in txn.dirty.items():
            pipe.set(self._k(key), state.model_dump_json())
            pipe.sadd(f"{self._ns}:index:{state.kind}", key)
        for env in fresh:
            pipe.set(self._seen(env.event_id), 1, ex=self._ttl)
        return Applied(len(fresh), len(events) - len(fresh), tuple(txn.dirty.values()))

    def load(self, state_type: type[S], tenant_id: str, entity_id: str) -> S | None:
        raw = self._r.get(self._k(state_key(state_type.kind, tenant_id, entity_id)))
        return None if raw is None else state_type.model_validate_json(raw)

    def keys(self, kind: str) -> list[str]:
        members = self._r.smembers(f"{self._ns}:index:{kind}")
        return sorted(k.decode() if isinstance(k, bytes) else str(k) for k in members)

    def clear(self) -> int:
        """Delete everything under the namespace (a fresh store for a rebuild); returns keys deleted."""
        n = 0
        for key in self._r.scan_iter(match=f"{self._ns}:*", count=1000):
            n += int(self._r.delete(key))
        return n
