"""The assignment state as of each task creation of a batch, with ONE state transaction for the batch.

A task is ranked on the state as of its creation: what came before it in the batch counts, what came after
does not (the training replay builds its rows that way). Applying the batch segment by segment
(:func:`services.assignment.handlers.segments`) gives that, at the price of one Redis transaction and one
read of every touched row per segment. Instead, :class:`AsOf` reads the committed rows the batch touches
once (one read per kind and tenant, before the batch is applied), runs the batch through the same reducers
in memory, and keeps each changed row as it was at the end of each segment; :meth:`AsOf.view` is then a
read-only :class:`~services.assignment.state.StateStore` as of the end of segment ``k``: those rows from
memory, every other row (not touched by the batch, so the same before and after it) from the store.

The assignment reducers are idempotent (last-writer-wins fields, sets, contributions derived from the task
row), so running events the store already applied (a redelivery) through them changes nothing: the views
need no applied-marks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

from mesh.events import Envelope
from mesh.features import AggregateStore, Applied, EntityState, Reducers, state_key
from services.assignment.state import PersonState, StateStore, TaskState, TenantState

S = TypeVar("S", bound=EntityState)


def _people_named(env: Envelope) -> list[str]:
    """The people an event names (their rows are likely to change)."""
    if env.type in ("user_joined", "user_skills_updated"):
        return [getattr(env, env.type).user_id]
    if env.type in ("project_created", "project_updated"):
        return list(getattr(env, env.type).member_ids)
    if env.type in ("task_assigned", "task_completed"):
        return [getattr(env, env.type).assignee_id]
    return []


class AsOf:
    """The rows a batch touches, as they were before it and at the end of each of its segments."""

    def __init__(self, store: AggregateStore, segments: Sequence[Sequence[Envelope]]) -> None:
        self._store = store
        self._reducers: Reducers = store.reducers
        self._states: dict[str, EntityState] = {}
        self._before: dict[str, str | None] = {}
        """key -> the committed row before the batch (JSON; None: absent)."""
        self._versions: dict[str, list[tuple[int, str]]] = {}
        """key -> (segment, row at its end) for each segment that changed it."""
        self._changed: set[str] = set()
        self._prefetch([env for segment in segments for env in segment])
        for k, segment in enumerate(segments):
            for env in segment:
                self._reducers.reduce(self, env)
            for key in self._changed:
                self._versions.setdefault(key, []).append((k, self._states[key].model_dump_json()))
            self._changed = set()

    # ------------------------------------------------------------------------------------------ Txn
    def get(self, state_type: type[S], tenant_id: str, entity_id: str) -> S:
        key = state_key(state_type.kind, tenant_id, entity_id)
        if key not in self._states:
            self._load(state_type, tenant_id, [entity_id])
        state = self._states[key]
        assert isinstance(state, state_type)
        return state

    def put(self, state: EntityState) -> None:
        self._states[state.key()] = state
        self._changed.add(state.key())

    # ------------------------------------------------------------------------------------------ reading
    def _load(self, state_type: type[EntityState], tenant_id: str, entity_ids: Iterable[str]) -> None:
        ids = [i for i in dict.fromkeys(entity_ids) if state_key(state_type.kind, tenant_id, i) not in self._states]
        for entity_id, found in zip(ids, self._store.load_many(state_type, tenant_id, ids), strict=True):
            key = state_key(state_type.kind, tenant_id, entity_id)
            self._before[key] = None if found is None else found.model_dump_json()
            self._states[key] = found or state_type(tenant_id=tenant_id, entity_id=entity_id)

    def _prefetch(self, events: Sequence[Envelope]) -> None:
        """The rows the batch will touch, in one read per kind and tenant where they can be told in advance
        (its tasks, the people its events name and who holds its tasks, its tenants); the rest load lazily."""
        tasks: dict[str, list[str]] = {}
        people: dict[str, list[str]] = {}
        for env in events:
            for state_type, key in self._reducers.prefetch(env):
                if state_type is TaskState:
                    tasks.setdefault(env.tenant_id, []).append(key.split(":", 2)[2])
            people.setdefault(env.tenant_id, []).extend(_people_named(env))
        for tenant, ids in tasks.items():
            self._load(TaskState, tenant, ids)
            for i in ids:
                task = self._states[state_key(TaskState.kind, tenant, i)]
                assert isinstance(task, TaskState)
                people.setdefault(tenant, []).extend(u for u in (task.assignee_id, task.completed_by) if u)
        for tenant, ids in people.items():
            self._load(PersonState, tenant, [u for u in ids if u])
        for tenant in {env.tenant_id for env in events if env.type == "user_joined"}:
            self._load(TenantState, tenant, [""])

    def row(self, key: str, segment: int) -> tuple[bool, str | None]:
        """(known, row as of the end of ``segment``); not known: the batch does not touch it."""
        if key not in self._before:
            return False, None
        current = self._before[key]
        for k, row in self._versions.get(key, ()):
            if k > segment:
                break
            current = row
        return True, current

    def view(self, segment: int) -> StateStore:
        """The state as of the end of ``segment`` (read-only)."""
        return StateStore(_View(self, self._store, segment))


class _View:
    """A read-only aggregate store: the batch's rows as of a segment over the committed store."""

    def __init__(self, asof: AsOf, store: AggregateStore, segment: int) -> None:
        self._asof = asof
        self._store = store
        self._segment = segment
        self.reducers = store.reducers

    def load(self, state_type: type[S], tenant_id: str, entity_id: str) -> S | None:
        return self.load_many(state_type, tenant_id, [entity_id])[0]

    def load_many(self, state_type: type[S], tenant_id: str, entity_ids: Sequence[str]) -> list[S | None]:
        out: list[S | None] = [None] * len(entity_ids)
        rest: list[int] = []
        for n, entity_id in enumerate(entity_ids):
            known, row = self._asof.row(state_key(state_type.kind, tenant_id, entity_id), self._segment)
            if not known:
                rest.append(n)
            elif row is not None:
                out[n] = state_type.model_validate_json(row)
        if rest:
            for n, found in zip(rest, self._store.load_many(state_type, tenant_id, [entity_ids[n] for n in rest]),
                                strict=True):
                out[n] = found
        return out

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        raise TypeError("a view of the state as of a segment is read-only")

    def keys(self, kind: str) -> list[str]:
        return self._store.keys(kind)

    def built(self) -> bool:
        return self._store.built()

    def mark_built(self) -> None:
        raise TypeError("a view of the state as of a segment is read-only")

    def clear(self) -> int:
        raise TypeError("a view of the state as of a segment is read-only")
