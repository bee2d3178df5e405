"""The service state: events -> full person/task rows (and who is active), and training labels.

The same :func:`apply_event` runs in the service and in the offline replay that builds the training set
(features as of each task's creation); :class:`services.assignment.online.FeatureSync` pushes the rows
it changes to the Feast online store, where the ranker reads them.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal, Protocol

from mesh.events import Envelope, occurred_at, task_type_slot
from services.assignment.features import PersonFeatures, TaskFeatures


@dataclass(frozen=True)
class TaskRecord:
    """A task's features plus what the bookkeeping needs (who holds it, whether it is done)."""

    features: TaskFeatures
    assignee_id: str = ""
    done: bool = False


@dataclass(frozen=True)
class Label:
    """What happened to a task: who it was assigned to, or who completed it (a training label)."""

    tenant_id: str
    task_id: str
    user_id: str
    kind: Literal["assigned", "completed"]
    at: datetime


class StateStore(Protocol):
    """The service's own state: the full rows it updates on each event, and who is active. The rows the
    model reads at serving time are the ones pushed from here to the online store (``online.py``)."""

    def active_ids(self, tenant_id: str) -> list[str]:
        """The active people of a tenant, in a stable order (first seen in memory, sorted in Redis)."""
        ...

    def person(self, tenant_id: str, user_id: str) -> PersonFeatures | None: ...

    def task(self, tenant_id: str, task_id: str) -> TaskRecord | None: ...

    def put_person(self, tenant_id: str, person: PersonFeatures) -> None: ...

    def put_task(self, tenant_id: str, task: TaskRecord) -> None: ...


class InMemoryState:
    def __init__(self) -> None:
        self._people: dict[str, dict[str, PersonFeatures]] = {}
        self._tasks: dict[str, dict[str, TaskRecord]] = {}

    def active_ids(self, tenant_id: str) -> list[str]:
        # first-seen order: the order training lists have always had (tree training is order-sensitive)
        return [u for u, p in self._people.get(tenant_id, {}).items() if p.active]

    def person(self, tenant_id: str, user_id: str) -> PersonFeatures | None:
        return self._people.get(tenant_id, {}).get(user_id)

    def task(self, tenant_id: str, task_id: str) -> TaskRecord | None:
        return self._tasks.get(tenant_id, {}).get(task_id)

    def put_person(self, tenant_id: str, person: PersonFeatures) -> None:
        self._people.setdefault(tenant_id, {})[person.user_id] = person

    def put_task(self, tenant_id: str, task: TaskRecord) -> None:
        self._tasks.setdefault(tenant_id, {})[task.features.task_id] = task


def apply_event(store: StateStore, env: Envelope) -> Label | None:
    """Update the rows an event touches; return a label for assignment and completion events."""
    handler = _APPLY.get(env.type)
    return handler(store, env) if handler is not None else None


def _person(store: StateStore, tenant: str, user_id: str) -> PersonFeatures:
    return store.person(tenant, user_id) or PersonFeatures(user_id=user_id, active=False)


def _user_joined(store: StateStore, env: Envelope) -> None:
    e, at = env.user_joined, occurred_at(env)
    p = _person(store, env.tenant_id, e.user_id)
    store.put_person(env.tenant_id, replace(
        p, skills={s.name: int(s.level) for s in e.skills}, seniority=int(e.seniority), role=e.role,
        capacity_hours=e.capacity_hours_per_week or 40.0, active=True, as_of=max(p.as_of, at)))


def _skills_updated(store: StateStore, env: Envelope) -> None:
    e, at = env.user_skills_updated, occurred_at(env)
    p = _person(store, env.tenant_id, e.user_id)
    store.put_person(env.tenant_id, replace(p, skills={s.name: int(s.level) for s in e.skills},
                                            as_of=max(p.as_of, at)))


def _members(store: StateStore, env: Envelope, project_id: str, member_ids: Sequence[str]) -> None:
    at = occurred_at(env)
    for user_id in member_ids:
        p = _person(store, env.tenant_id, user_id)
        store.put_person(env.tenant_id, replace(p, projects=p.projects | {project_id}, as_of=max(p.as_of, at)))


def _task_created(store: StateStore, env: Envelope) -> None:
    e = env.task_created
    features = TaskFeatures(
        task_id=e.task_id, project_id=e.project_id, task_type=task_type_slot(e.task_type), priority=int(e.priority),
        required_skills=tuple(e.required_skills), estimate_hours=e.estimate_hours,
        text=f"{e.title} {e.description}", as_of=occurred_at(env))
    previous = store.task(env.tenant_id, e.task_id)
    store.put_task(env.tenant_id, TaskRecord(features, *(() if previous is None else
                                                         (previous.assignee_id, previous.done))))


def _task_updated(store: StateStore, env: Envelope) -> None:
    e = env.task_updated
    record = store.task(env.tenant_id, e.task_id)
    if record is None:
        return
    f = record.features
    changes: dict[str, Any] = {"as_of": max(f.as_of, occurred_at(env))}
    if e.HasField("title") or e.HasField("description"):
        title = e.title if e.HasField("title") else ""
        description = e.description if e.HasField("description") else ""
        changes["text"] = f"{title} {description}"
    if e.HasField("priority"):
        changes["priority"] = int(e.priority)
    if e.required_skills:
        changes["required_skills"] = tuple(e.required_skills)
    if e.HasField("estimate_hours"):
        changes["estimate_hours"] = e.estimate_hours
    store.put_task(env.tenant_id, replace(record, features=replace(f, **changes)))


def _task_assigned(store: StateStore, env: Envelope) -> Label:
    e, at = env.task_assigned, occurred_at(env)
    record = store.task(env.tenant_id, e.task_id) or TaskRecord(TaskFeatures(e.task_id, e.project_id, as_of=at))
    hours = max(record.features.estimate_hours, 0.0)
    if record.assignee_id and record.assignee_id != e.assignee_id and not record.done:
        old = _person(store, env.tenant_id, record.assignee_id)
        store.put_person(env.tenant_id, replace(old, open_tasks=max(old.open_tasks - 1, 0),
                                                open_hours=max(old.open_hours - hours, 0.0), as_of=max(old.as_of, at)))
    if record.assignee_id != e.assignee_id:
        p = _person(store, env.tenant_id, e.assignee_id)
        project = record.features.project_id or e.project_id
        by_project = {**p.assigned_by_project, project: p.assigned_by_project.get(project, 0) + 1}
        store.put_person(env.tenant_id, replace(
            p, open_tasks=p.open_tasks + (not record.done), open_hours=p.open_hours + (0.0 if record.done else hours),
            assigned_by_project=by_project, assigned_total=p.assigned_total + 1, as_of=max(p.as_of, at)))
        store.put_task(env.tenant_id, replace(record, assignee_id=e.assignee_id))
    return Label(env.tenant_id, e.task_id, e.assignee_id, "assigned", at)


def _task_completed(store: StateStore, env: Envelope) -> Label | None:
    e, at = env.task_completed, occurred_at(env)
    record = store.task(env.tenant_id, e.task_id)
    if record is None or record.done:
        return None
    user_id = e.assignee_id or record.assignee_id
    kind = record.features.task_type
    if record.assignee_id:
        holder = _person(store, env.tenant_id, record.assignee_id)
        store.put_person(env.tenant_id, replace(
            holder, open_tasks=max(holder.open_tasks - 1, 0),
            open_hours=max(holder.open_hours - max(record.features.estimate_hours, 0.0), 0.0),
            as_of=max(holder.as_of, at)))
    if user_id:
        p = _person(store, env.tenant_id, user_id)
        store.put_person(env.tenant_id, replace(
            p, done_by_type={**p.done_by_type, kind: p.done_by_type.get(kind, 0) + 1},
            hours_by_type={**p.hours_by_type, kind: p.hours_by_type.get(kind, 0.0) + max(e.actual_hours, 0.0)},
            as_of=max(p.as_of, at)))
    store.put_task(env.tenant_id, replace(record, done=True))
    return Label(env.tenant_id, e.task_id, user_id, "completed", at) if user_id else None


_APPLY: dict[str, Any] = {
    "user_joined": _user_joined,
    "user_skills_updated": _skills_updated,
    "project_created": lambda s, env: _members(s, env, env.project_created.project_id, env.project_created.member_ids),
    "project_updated": lambda s, env: _members(s, env, env.project_updated.project_id, env.project_updated.member_ids),
    "task_created": _task_created,
    "task_updated": _task_updated,
    "task_assigned": _task_assigned,
    "task_completed": _task_completed,
}
EVENT_TYPES: tuple[str, ...] = tuple(_APPLY)
"""The event types that change assignment features."""


def person_to_json(p: PersonFeatures) -> str:
    d = dataclasses.asdict(p)
    d["projects"], d["as_of"] = sorted(p.projects), p.as_of.isoformat()
    return json.dumps(d)


def person_from_json(text: str | bytes) -> PersonFeatures:
    d = json.loads(text)
    d["projects"], d["as_of"] = frozenset(d["projects"]), datetime.fromisoformat(d["as_of"])
    return PersonFeatures(**d)


def task_to_json(t: TaskRecord) -> str:
    d = dataclasses.asdict(t)
    d["features"]["as_of"] = t.features.as_of.isoformat()
    return json.dumps(d)


def task_from_json(text: str | bytes) -> TaskRecord:
    d = json.loads(text)
    f = d.pop("features")
    f["as_of"], f["required_skills"] = datetime.fromisoformat(f["as_of"]), tuple(f["required_skills"])
    return TaskRecord(TaskFeatures(**f), **d)


class RedisState:
    """The state in Redis: per tenant a hash of people, a hash of tasks and the set of active people."""

    def __init__(self, url: str, namespace: str = "assignment") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._ns = namespace

    def _key(self, tenant_id: str, kind: str) -> str:
        return f"{self._ns}:{tenant_id}:{kind}"

    def active_ids(self, tenant_id: str) -> list[str]:
        members = self._redis.smembers(self._key(tenant_id, "active"))
        return sorted(m.decode() for m in members)

    def person(self, tenant_id: str, user_id: str) -> PersonFeatures | None:
        value = self._redis.hget(self._key(tenant_id, "people"), user_id)
        return None if value is None else person_from_json(value)

    def task(self, tenant_id: str, task_id: str) -> TaskRecord | None:
        value = self._redis.hget(self._key(tenant_id, "tasks"), task_id)
        return None if value is None else task_from_json(value)

    def put_person(self, tenant_id: str, person: PersonFeatures) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._key(tenant_id, "people"), person.user_id, person_to_json(person))
        active = self._key(tenant_id, "active")
        if person.active:
            pipe.sadd(active, person.user_id)
        else:
            pipe.srem(active, person.user_id)
        pipe.execute()

    def put_task(self, tenant_id: str, task: TaskRecord) -> None:
        self._redis.hset(self._key(tenant_id, "tasks"), task.features.task_id, task_to_json(task))

    def clear(self) -> int:
        """Delete everything under the namespace (tests, benchmarks); returns how many keys went."""
        keys = list(self._redis.scan_iter(f"{self._ns}:*"))
        return int(self._redis.delete(*keys)) if keys else 0
