"""Where aggregate state lives: Redis (the stack) or memory (SQLite setups, tests, offline rebuilds).

`apply(events)` is atomic per batch and idempotent: events whose id was already applied are skipped,
and the event ids are recorded in the same transaction as the state they changed (Redis: WATCH/MULTI
over every state read, the event-id marks read again once those are watched, retried on conflict). A crash
before the commit leaves nothing; after it, the redelivered events are skipped: every effect happens exactly once.

The same stores hold a service's private state: construct them with the service's own
:class:`~mesh.features.Reducers` table and (Redis) its own namespace, e.g.
``RedisAggregates(client, f"{settings.namespace}:assignment", reducers=ASSIGNMENT_REDUCERS)``; the
applied-event marks live under that namespace, so the service and the feature ingestor each apply every
event once. The service reads its states back with :meth:`load` / :meth:`load_many` (and rows of its
views with :func:`read_view`), from the committed state itself.

State that is missing (a fresh store, or a Redis restart without persistence) is detected with the
*built* marker: a service rebuilds (replays its inputs through :meth:`apply`) and calls
:meth:`mark_built`; ``apply(..., require_built=True)`` raises :class:`StateMissing` (an
:class:`~mesh.errors.Unavailable`, so the bus retries) when the marker is gone, checked inside the same
transaction. Redis connection errors and timeouts surface as :class:`~mesh.errors.Unavailable` too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from mesh.errors import Unavailable, translate_infra_errors
from mesh.events import Envelope
from mesh.features._reduce import ENTITY_REDUCERS
from mesh.features._schema import FeatureRecord, ViewSpec, record_of
from mesh.features._state import EntityState, Reducers, state_key

S = TypeVar("S", bound=EntityState)
R = TypeVar("R")
Loader = Callable[[list[str]], list[bytes | None]]


class StateMissing(Unavailable):
    """The store's state is not built (never built, or lost with a Redis restart): rebuild, then retry."""


@dataclass(frozen=True)
class Applied:
    """What one apply did."""

    applied: int
    duplicates: int
    changed: tuple[EntityState, ...]
    """Final state of every entity the batch changed."""


class AggregateStore(Protocol):
    """Port for aggregate state (one :class:`Reducers` table per store)."""

    reducers: Reducers

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        """Reduce the events not applied before, atomically with their applied-marks.
        ``require_built``: raise :class:`StateMissing` (nothing applied) unless the store is built."""
        ...

    def load(self, state_type: type[S], tenant_id: str, entity_id: str) -> S | None: ...

    def load_many(self, state_type: type[S], tenant_id: str, entity_ids: Sequence[str]) -> list[S | None]:
        """States of one tenant's entities, in order (None where unknown): one round trip."""
        ...

    def keys(self, kind: str) -> list[str]:
        """State keys (``kind:tenant:id``) of every entity of `kind`."""
        ...

    def built(self) -> bool:
        """Whether :meth:`mark_built` was called on this state (and the state was not lost since)."""
        ...

    def mark_built(self) -> None:
        """Record that the state is complete up to the inputs applied so far (after a rebuild)."""
        ...

    def clear(self) -> int:
        """Forget everything, the built marker and applied-marks included; returns entries deleted."""
        ...


Reuse = Callable[[type[EntityState], str, bytes], EntityState | None]
"""(state type, key, stored JSON) -> a decoded state that is known to equal that JSON, or None."""


class BufferTxn:
    """Reads through a loader once per key, buffers writes until commit."""

    def __init__(self, loader: Loader, reuse: Reuse | None = None) -> None:
        self._loader = loader
        self._reuse = reuse
        self._cache: dict[str, EntityState] = {}
        self._key_of: dict[int, str] = {}
        """id(state) -> key of the states handed out (put() is called several times per event)."""
        self.dirty: dict[str, EntityState] = {}

    def _decode(self, state_type: type[S], key: str, raw: bytes | None) -> EntityState:
        if raw is not None and self._reuse is not None:
            state = self._reuse(state_type, key, raw)
            if state is not None:
                return state
        return _decode(state_type, key, raw)

    def _hold(self, key: str, state: EntityState) -> None:
        self._cache[key] = state
        self._key_of[id(state)] = key

    def prefetch(self, pairs: Iterable[tuple[type[EntityState], str]]) -> None:
        cache = self._cache
        todo = {key: t for t, key in pairs if key not in cache}
        for (key, state_type), raw in zip(todo.items(), self._loader(list(todo)), strict=True):
            self._hold(key, self._decode(state_type, key, raw))

    def get(self, state_type: type[S], tenant_id: str, entity_id: str) -> S:
        key = f"{state_type.kind}:{tenant_id}:{entity_id}"  # state_key(), inlined: several calls per event
        state = self._cache.get(key)
        if state is None:
            state = self._decode(state_type, key, self._loader([key])[0])
            self._hold(key, state)
        assert isinstance(state, state_type)
        return state

    def put(self, state: EntityState) -> None:
        key = self._key_of.get(id(state))
        self.dirty[state.key() if key is None else key] = state


def _decode(state_type: type[S], key: str, raw: bytes | None) -> S:
    if raw is None:
        _, tenant_id, entity_id = key.split(":", 2)
        return state_type(tenant_id=tenant_id, entity_id=entity_id)
    return state_type.model_validate_json(raw)


def _run(txn: BufferTxn, events: Sequence[Envelope], already: Sequence[bool], reducers: Reducers) -> list[Envelope]:
    """Reduce the events not applied before (nor earlier in the batch); return them."""
    txn.prefetch(pair for env in events for pair in reducers.prefetch(env))
    fresh: list[Envelope] = []
    ids: set[str] = set()
    for env, seen in zip(events, already, strict=True):
        if seen or env.event_id in ids:
            continue
        ids.add(env.event_id)
        reducers.reduce(txn, env)
        fresh.append(env)
    return fresh


def read_view(store: AggregateStore, view: ViewSpec[S, R], tenant_id: str,
              entity_ids: Sequence[str]) -> list[FeatureRecord[R] | None]:
    """Rows of `view` for one tenant's entities, derived from the committed state (one round trip)."""
    states = store.load_many(view.state_type, tenant_id, entity_ids)
    return [None if s is None else record_of(view, s) for s in states]


class InMemoryAggregates:
    """Aggregates in a dict (JSON, so snapshots never alias live state)."""

    def __init__(self, reducers: Reducers = ENTITY_REDUCERS) -> None:
        self.reducers = reducers
        self._data: dict[str, bytes] = {}
        self._seen: set[str] = set()
        self._built = False
        self._lock = threading.Lock()

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        with self._lock:
            if require_built and not self._built:
                raise StateMissing(f"{self.reducers.name} state is not built")
            txn = BufferTxn(lambda keys: [self._data.get(k) for k in keys])
            fresh = _run(txn, events, [env.event_id in self._seen for env in events], self.reducers)
            for key, state in txn.dirty.items():
                self._data[key] = state.model_dump_json().encode()
            self._seen.update(env.event_id for env in fresh)
        return Applied(len(fresh), len(events) - len(fresh), tuple(txn.dirty.values()))

    def load(self, state_type: type[S], tenant_id: str, entity_id: str) -> S | None:
        return self.load_many(state_type, tenant_id, [entity_id])[0]

    def load_many(self, state_type: type[S], tenant_id: str, entity_ids: Sequence[str]) -> list[S | None]:
        raws = [self._data.get(state_key(state_type.kind, tenant_id, i)) for i in entity_ids]
        return [None if raw is None else state_type.model_validate_json(raw) for raw in raws]

    def keys(self, kind: str) -> list[str]:
        return sorted(k for k in self._data if k.startswith(f"{kind}:"))

    def update(self, state_type: type[S], tenant_id: str, entity_id: str, change: Callable[[S], None]) -> S | None:
        """Change one existing state outside any event (an operator's action); None when it does not exist."""
        key = state_key(state_type.kind, tenant_id, entity_id)
        with self._lock:
            raw = self._data.get(key)
            if raw is None:
                return None
            state = state_type.model_validate_json(raw)
            change(state)
            self._data[key] = state.model_dump_json().encode()
        return state

    def built(self) -> bool:
        return self._built

    def mark_built(self) -> None:
        self._built = True

    def snapshot(self) -> InMemoryAggregates:
        """A copy that later applies do not change (the offline replay's state as of a probe time)."""
        with self._lock:
            out = InMemoryAggregates(self.reducers)
            out._data, out._seen, out._built = dict(self._data), set(self._seen), self._built
        return out

    def clear(self) -> int:
        with self._lock:
            n = len(self._data) + len(self._seen) + int(self._built)
            self._data, self._seen, self._built = {}, set(), False
        return n


def _unavailable(what: str) -> translate_infra_errors:
    """Redis down, restarting or loading its data: a transient failure (the bus retries), not poison."""
    return translate_infra_errors(what)


_MARK_SEEN = "for i = 1, #KEYS do redis.call('SET', KEYS[i], 1, 'EX', ARGV[1]) end"
"""Applied-marks for many events in one command (each with its own expiry)."""


class RedisAggregates:
    """Aggregates in Redis under `namespace`; one optimistic transaction per batch.

    ``cache_states`` > 0 keeps up to that many states this process committed, decoded, with the JSON it
    wrote: the next apply still reads (and WATCHes) every state from Redis, but where the stored JSON is
    byte for byte what this process wrote, it takes the kept state instead of decoding the JSON again
    (decoding was ~15% of the feature ingestor's CPU). A state changed by anyone else reads back different
    bytes and is decoded as before. A kept state is handed to one transaction only (taken out while in use,
    put back after its commit), so an aborted or retried transaction never sees a half-applied state.
    The states in :attr:`Applied.changed` are then the kept ones: read them, never change them.
    """

    def __init__(self, client: Any, namespace: str, *, seen_ttl_s: int = 30 * 24 * 3600,
                 reducers: Reducers = ENTITY_REDUCERS, cache_states: int = 0) -> None:
        self._r = client
        self._ns = namespace
        self._ttl = seen_ttl_s
        self.reducers = reducers
        self._cache_max = cache_states
        self._kept: dict[str, tuple[bytes, EntityState]] = {}
        self._kept_lock = threading.Lock()

    def _reuse(self, state_type: type[EntityState], key: str, raw: bytes) -> EntityState | None:
        with self._kept_lock:
            kept = self._kept.pop(key, None)
        if kept is None or kept[0] != raw or type(kept[1]) is not state_type:
            return None
        return kept[1]

    def _keep(self, written: dict[str, tuple[bytes, EntityState]]) -> None:
        with self._kept_lock:
            if len(self._kept) + len(written) > self._cache_max:
                self._kept.clear()
            if len(written) <= self._cache_max:
                self._kept.update(written)

    def _k(self, key: str) -> str:
        return f"{self._ns}:agg:{key}"

    def _seen(self, event_id: str) -> str:
        return f"{self._ns}:seen:{event_id}"

    @property
    def _built_key(self) -> str:
        return f"{self._ns}:built"

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        if not events and not require_built:
            return Applied(0, 0, ())
        written: dict[str, tuple[bytes, EntityState]] = {}
        with _unavailable(f"applying {len(events)} events to {self._ns}"):
            result: Applied = self._r.transaction(lambda pipe: self._body(pipe, events, require_built, written),
                                                  value_from_callable=True)
        if self._cache_max:
            self._keep(written)  # committed: these bytes are what Redis holds now
        return result

    def _body(self, pipe: Any, events: Sequence[Envelope], require_built: bool,
              written: dict[str, tuple[bytes, EntityState]]) -> Applied:
        seen_keys = [self._seen(env.event_id) for env in events]
        if require_built:
            # watched with the rest: a restart that wipes the marker mid-transaction aborts the commit
            pipe.watch(self._built_key)
            if not pipe.exists(self._built_key):
                raise StateMissing(f"{self.reducers.name} state under {self._ns!r} is not built (or was lost)")
        if not events:
            return Applied(0, 0, ())
        # The applied-marks are read, not WATCHed: Redis (< 7.4) checks each WATCHed key against every key the
        # connection already watches, so WATCHing a batch's marks cost O(n^2) (3.3 s for 10,000 events, most of
        # the ingestor's wall time). Every STATE read is WATCHed (below), and the marks of the events about to
        # be applied are read again once all of those WATCHes are in place (see _still_fresh).
        already = [flag is not None for flag in self._r.mget(seen_keys)]

        def loader(keys: list[str]) -> list[bytes | None]:
            if not keys:
                return []
            full = [self._k(k) for k in keys]
            pipe.watch(*full)
            values: list[bytes | None] = pipe.mget(full)
            return values

        txn = BufferTxn(loader, self._reuse if self._cache_max else None)
        fresh = _run(txn, events, already, self.reducers)
        self._still_fresh(fresh)
        pipe.multi()
        # A few commands per batch, not a few per event: parsing one reply per command in redis-py was ~10%
        # of the feature ingestor's time.
        written.clear()  # a retried transaction starts over
        if txn.dirty:
            for key, state in txn.dirty.items():
                written[key] = (state.model_dump_json().encode(), state)
            pipe.mset({self._k(key): data for key, (data, _) in written.items()})
            by_kind: dict[str, list[str]] = {}
            for key, state in txn.dirty.items():
                by_kind.setdefault(state.kind, []).append(key)
            for kind, keys in by_kind.items():
                pipe.sadd(f"{self._ns}:index:{kind}", *keys)
        if fresh:
            seen = [self._seen(env.event_id) for env in fresh]
            pipe.eval(_MARK_SEEN, len(seen), *seen, self._ttl)
        return Applied(len(fresh), len(events) - len(fresh), tuple(txn.dirty.values()))

    def _still_fresh(self, fresh: Sequence[Envelope]) -> None:
        """Retry the transaction when another writer applied one of `fresh` meanwhile.

        Checked after every state this transaction read is WATCHed: a writer that applied one of these events
        and committed BEFORE a state was WATCHed has set its mark by now (seen here: retry, and the retry
        skips it); one that commits AFTER it wrote a state this transaction read (applying the same event to
        the same states: the reducers are deterministic), so EXEC fails and the transaction retries. An event
        whose reducers read no state changes none either: applying it twice changes nothing.
        """
        if not fresh:
            return
        import redis

        marks = self._r.mget([self._seen(env.event_id) for env in fresh])
        if any(flag is not None for flag in marks):
            raise redis.WatchError("events of this batch were applied by another writer meanwhile")

    def load(self, state_type: type[S], tenant_id: str, entity_id: str) -> S | None:
        return self.load_many(state_type, tenant_id, [entity_id])[0]

    def load_many(self, state_type: type[S], tenant_id: str, entity_ids: Sequence[str]) -> list[S | None]:
        if not entity_ids:
            return []
        with _unavailable(f"reading {state_type.kind} state of {self._ns}"):
            raws = self._r.mget([self._k(state_key(state_type.kind, tenant_id, i)) for i in entity_ids])
        return [None if raw is None else state_type.model_validate_json(raw) for raw in raws]

    def update(self, state_type: type[S], tenant_id: str, entity_id: str, change: Callable[[S], None]) -> S | None:
        """Change one existing state outside any event (an operator's action, e.g. acknowledging an incident):
        read, ``change``, write, in one optimistic transaction (WATCHed like :meth:`apply`'s reads, so it
        never overwrites a concurrent apply, and is retried after one). None when the state does not exist."""
        key = self._k(state_key(state_type.kind, tenant_id, entity_id))

        def body(pipe: Any) -> S | None:
            raw = pipe.get(key)
            if raw is None:
                return None
            state = state_type.model_validate_json(raw)
            change(state)
            pipe.multi()
            pipe.set(key, state.model_dump_json().encode())
            return state

        with _unavailable(f"updating {state_type.kind} state of {self._ns}"):
            out: S | None = self._r.transaction(body, key, value_from_callable=True)
        if out is not None and self._cache_max:
            with self._kept_lock:
                self._kept.pop(state_key(state_type.kind, tenant_id, entity_id), None)
        return out

    def keys(self, kind: str) -> list[str]:
        with _unavailable(f"listing {kind} state of {self._ns}"):
            members = self._r.smembers(f"{self._ns}:index:{kind}")
        return sorted(k.decode() if isinstance(k, bytes) else str(k) for k in members)

    def built(self) -> bool:
        with _unavailable(f"checking the built marker of {self._ns}"):
            return bool(self._r.exists(self._built_key))

    def mark_built(self) -> None:
        with _unavailable(f"marking {self._ns} built"):
            self._r.set(self._built_key, datetime.now(UTC).isoformat())

    def clear(self) -> int:
        """Delete everything under the namespace (a fresh store for a rebuild); returns keys deleted."""
        n = 0
        with self._kept_lock:
            self._kept.clear()
        with _unavailable(f"clearing {self._ns}"):
            for key in self._r.scan_iter(match=f"{self._ns}:*", count=1000):
                n += int(self._r.delete(key))
        return n
