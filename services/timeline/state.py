"""Keeping the timeline state fresh: events -> per-task status history, per-person queues and speed, and
per-project deadlines, milestones and slip.

The same :func:`apply_event` feeds the online store in the service and the offline replay that builds the
training set (features as of each event), so training and serving read identical rows.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp
from sunday.ml.v1 import events_pb2

from mesh.events import OTHER_TASK_TYPE, Envelope, InvalidEvent, occurred_at, status_name

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class TaskState:
    """One task and its status history (statuses[i] entered at status_times[i])."""

    task_id: str
    project_id: str
    milestone_id: str = ""
    task_type: str = OTHER_TASK_TYPE
    priority: int = 0
    estimate_hours: float = 0.0
    depends_on: tuple[str, ...] = ()
    assignee_id: str = ""
    created_at: datetime = EPOCH
    due_at: datetime | None = None
    statuses: tuple[str, ...] = ()
    status_times: tuple[datetime, ...] = ()
    done_at: datetime | None = None
    actual_hours: float = 0.0
    text: str = ""
    as_of: datetime = EPOCH

    @property
    def is_open(self) -> bool:
        return self.done_at is None


@dataclass(frozen=True)
class PersonState:
    """A person: capacity, speed on finished work, and the queue of their open tasks (assignment order)."""

    user_id: str
    capacity_hours_per_week: float = 40.0
    done: int = 0
    actual_hours: float = 0.0
    estimated_hours: float = 0.0
    """estimates of the finished tasks that had one (with ``actual_hours`` of those: the speed ratio)"""
    estimated_actual_hours: float = 0.0
    queue: tuple[tuple[str, float], ...] = ()
    """(task id, estimated hours) of the open tasks assigned to the person, oldest first"""
    as_of: datetime = EPOCH


@dataclass(frozen=True)
class MilestoneState:
    milestone_id: str
    due_at: datetime | None = None
    completed: bool = False


@dataclass(frozen=True)
class ProjectState:
    """A project: deadline, milestones, its tasks and how far actual hours ran over the estimates."""

    project_id: str
    start: datetime = EPOCH
    deadline: datetime | None = None
    planned_deadline: datetime | None = None
    """the deadline the project was created with (later moves do not change it): the planned duration"""
    milestones: tuple[MilestoneState, ...] = ()
    task_ids: tuple[str, ...] = ()
    done_actual_hours: float = 0.0
    done_estimated_hours: float = 0.0
    as_of: datetime = EPOCH


class TimelineStore(Protocol):
    """Where the rows live: in memory (tests, offline replay) or Redis (the service)."""

    def task(self, tenant_id: str, task_id: str) -> TaskState | None: ...

    def tasks(self, tenant_id: str, task_ids: Sequence[str]) -> list[TaskState]:
        """The known tasks among ``task_ids``, in that order."""
        ...

    def person(self, tenant_id: str, user_id: str) -> PersonState | None: ...

    def project(self, tenant_id: str, project_id: str) -> ProjectState | None: ...

    def put_task(self, tenant_id: str, task: TaskState) -> None: ...

    def put_person(self, tenant_id: str, person: PersonState) -> None: ...

    def put_project(self, tenant_id: str, project: ProjectState) -> None: ...


class InMemoryTimelineStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}

    def _get(self, tenant_id: str, kind: str, key: str) -> Any:
        return self.rows.get((tenant_id, kind), {}).get(key)

    def _put(self, tenant_id: str, kind: str, key: str, value: Any) -> None:
        self.rows.setdefault((tenant_id, kind), {})[key] = value

    def task(self, tenant_id: str, task_id: str) -> TaskState | None:
        out: TaskState | None = self._get(tenant_id, "tasks", task_id)
        return out

    def tasks(self, tenant_id: str, task_ids: Sequence[str]) -> list[TaskState]:
        known = self.rows.get((tenant_id, "tasks"), {})
        return [known[t] for t in task_ids if t in known]

    def person(self, tenant_id: str, user_id: str) -> PersonState | None:
        out: PersonState | None = self._get(tenant_id, "people", user_id)
        return out

    def project(self, tenant_id: str, project_id: str) -> ProjectState | None:
        out: ProjectState | None = self._get(tenant_id, "projects", project_id)
        return out

    def put_task(self, tenant_id: str, task: TaskState) -> None:
        self._put(tenant_id, "tasks", task.task_id, task)

    def put_person(self, tenant_id: str, person: PersonState) -> None:
        self._put(tenant_id, "people", person.user_id, person)

    def put_project(self, tenant_id: str, project: ProjectState) -> None:
        self._put(tenant_id, "projects", project.project_id, project)

    def snapshot(self) -> InMemoryTimelineStore:
        """A copy that later events do not change (rows are immutable: copying the maps is enough)."""
        out = InMemoryTimelineStore()
        out.rows = {k: dict(v) for k, v in self.rows.items()}
        return out


# ------------------------------------------------------------------------------------------ events
def _dt(ts: Timestamp) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


def check(env: Envelope) -> None:
    """Reject what the envelope validation cannot see: values that would poison the features."""
    if env.type == "task_created":
        e = env.task_created
        if not (0.0 <= e.estimate_hours < 1e5):
            raise InvalidEvent(f"task_created.estimate_hours {e.estimate_hours} is not a sane number of hours")
        if e.priority not in range(5):
            raise InvalidEvent(f"task_created.priority {e.priority} is not a known priority")
        if not e.task_id or not e.project_id:
            raise InvalidEvent("task_created needs task_id and project_id")
    if env.type == "task_status_changed" and env.task_status_changed.to_status not in events_pb2.TaskStatus.values():
        raise InvalidEvent(f"task_status_changed.to_status {env.task_status_changed.to_status} is unknown")
    if env.type == "task_completed" and not (0.0 <= env.task_completed.actual_hours < 1e5):
        raise InvalidEvent(f"task_completed.actual_hours {env.task_completed.actual_hours} is invalid")


def apply_event(store: TimelineStore, env: Envelope) -> str | None:
    """Update the rows an event touches; return the id of the project it concerns (None: no project)."""
    apply = _APPLY.get(env.type)
    return apply(store, env) if apply is not None else None


def _project(store: TimelineStore, tenant: str, project_id: str) -> ProjectState:
    return store.project(tenant, project_id) or ProjectState(project_id)


def _person(store: TimelineStore, tenant: str, user_id: str) -> PersonState:
    return store.person(tenant, user_id) or PersonState(user_id)


def _task_created(store: TimelineStore, env: Envelope) -> str:
    e, at = env.task_created, occurred_at(env)
    previous = store.task(env.tenant_id, e.task_id)
    task = TaskState(e.task_id, e.project_id, e.milestone_id, e.task_type or OTHER_TASK_TYPE, int(e.priority),
                     e.estimate_hours, tuple(e.depends_on), previous.assignee_id if previous else "", at,
                     _dt(e.due_at), ("todo",), (at,), text=f"{e.title}. {e.description}", as_of=at)
    store.put_task(env.tenant_id, task)
    p = _project(store, env.tenant_id, e.project_id)
    if e.task_id not in p.task_ids:
        store.put_project(env.tenant_id, replace(p, task_ids=(*p.task_ids, e.task_id), as_of=max(p.as_of, at)))
    return e.project_id


def _task_updated(store: TimelineStore, env: Envelope) -> str | None:
    e, at = env.task_updated, occurred_at(env)
    task = store.task(env.tenant_id, e.task_id)
    if task is None:
        return None
    changes: dict[str, Any] = {"as_of": max(task.as_of, at)}
    if e.HasField("priority"):
        changes["priority"] = int(e.priority)
    if e.HasField("estimate_hours"):
        changes["estimate_hours"] = e.estimate_hours
    if _dt(e.due_at) is not None:
        changes["due_at"] = _dt(e.due_at)
    store.put_task(env.tenant_id, replace(task, **changes))
    return task.project_id


def _dequeue(store: TimelineStore, tenant: str, user_id: str, task_id: str, at: datetime) -> None:
    if user_id:
        p = _person(store, tenant, user_id)
        store.put_person(tenant, replace(p, queue=tuple(q for q in p.queue if q[0] != task_id), as_of=max(p.as_of, at)))


def _task_assigned(store: TimelineStore, env: Envelope) -> str:
    e, at = env.task_assigned, occurred_at(env)
    task = store.task(env.tenant_id, e.task_id) or TaskState(e.task_id, e.project_id, created_at=at,
                                                             statuses=("todo",), status_times=(at,))
    if task.assignee_id != e.assignee_id:
        _dequeue(store, env.tenant_id, task.assignee_id, task.task_id, at)
        if task.is_open:
            p = _person(store, env.tenant_id, e.assignee_id)
            store.put_person(env.tenant_id, replace(p, queue=(*p.queue, (task.task_id, task.estimate_hours)),
                                                    as_of=max(p.as_of, at)))
    store.put_task(env.tenant_id, replace(task, assignee_id=e.assignee_id, as_of=max(task.as_of, at)))
    return task.project_id


def _task_status_changed(store: TimelineStore, env: Envelope) -> str | None:
    e, at = env.task_status_changed, occurred_at(env)
    task = store.task(env.tenant_id, e.task_id)
    if task is None:
        return None
    status = status_name(e.to_status)
    changes: dict[str, Any] = {"statuses": (*task.statuses, status), "status_times": (*task.status_times, at),
                               "as_of": max(task.as_of, at)}
    if status == "done" and task.done_at is None:
        changes["done_at"] = at
        _dequeue(store, env.tenant_id, task.assignee_id, task.task_id, at)
    elif status != "done" and task.done_at is not None:  # reopened
        changes["done_at"] = None
    store.put_task(env.tenant_id, replace(task, **changes))
    return task.project_id


def _task_completed(store: TimelineStore, env: Envelope) -> str | None:
    e, at = env.task_completed, occurred_at(env)
    task = store.task(env.tenant_id, e.task_id)
    if task is None or task.actual_hours > 0:
        return None if task is None else task.project_id
    _dequeue(store, env.tenant_id, task.assignee_id, task.task_id, at)
    store.put_task(env.tenant_id, replace(task, done_at=task.done_at or at, actual_hours=e.actual_hours,
                                          as_of=max(task.as_of, at)))
    user = e.assignee_id or task.assignee_id
    est = task.estimate_hours
    if user:
        p = _person(store, env.tenant_id, user)
        store.put_person(env.tenant_id, replace(
            p, done=p.done + 1, actual_hours=p.actual_hours + e.actual_hours,
            estimated_hours=p.estimated_hours + est, estimated_actual_hours=p.estimated_actual_hours
            + (e.actual_hours if est > 0 else 0.0), as_of=max(p.as_of, at)))
    if est > 0:
        pr = _project(store, env.tenant_id, task.project_id)
        store.put_project(env.tenant_id, replace(pr, done_actual_hours=pr.done_actual_hours + e.actual_hours,
                                                 done_estimated_hours=pr.done_estimated_hours + est,
                                                 as_of=max(pr.as_of, at)))
    return task.project_id


def _project_created(store: TimelineStore, env: Envelope) -> str:
    e, at = env.project_created, occurred_at(env)
    p = _project(store, env.tenant_id, e.project_id)
    deadline = _dt(e.deadline)
    store.put_project(env.tenant_id, replace(p, start=at, deadline=deadline, planned_deadline=deadline,
                                             as_of=max(p.as_of, at)))
    return e.project_id


def _project_updated(store: TimelineStore, env: Envelope) -> str:
    e, at = env.project_updated, occurred_at(env)
    p = _project(store, env.tenant_id, e.project_id)
    store.put_project(env.tenant_id, replace(p, deadline=_dt(e.deadline) or p.deadline, as_of=max(p.as_of, at)))
    return e.project_id


def _milestone_created(store: TimelineStore, env: Envelope) -> str:
    e, at = env.milestone_created, occurred_at(env)
    p = _project(store, env.tenant_id, e.project_id)
    others = tuple(m for m in p.milestones if m.milestone_id != e.milestone_id)
    store.put_project(env.tenant_id, replace(p, milestones=(*others, MilestoneState(e.milestone_id, _dt(e.due_at))),
                                             as_of=max(p.as_of, at)))
    return e.project_id


def _milestone_completed(store: TimelineStore, env: Envelope) -> str:
    e, at = env.milestone_completed, occurred_at(env)
    p = _project(store, env.tenant_id, e.project_id)
    ms = tuple(replace(m, completed=True) if m.milestone_id == e.milestone_id else m for m in p.milestones)
    store.put_project(env.tenant_id, replace(p, milestones=ms, as_of=max(p.as_of, at)))
    return e.project_id


def _user_joined(store: TimelineStore, env: Envelope) -> None:
    e, at = env.user_joined, occurred_at(env)
    p = _person(store, env.tenant_id, e.user_id)
    store.put_person(env.tenant_id, replace(p, capacity_hours_per_week=e.capacity_hours_per_week or 40.0,
                                            as_of=max(p.as_of, at)))


_APPLY: dict[str, Callable[[TimelineStore, Envelope], str | None]] = {
    "task_created": _task_created,
    "task_updated": _task_updated,
    "task_assigned": _task_assigned,
    "task_status_changed": _task_status_changed,
    "task_completed": _task_completed,
    "project_created": _project_created,
    "project_updated": _project_updated,
    "milestone_created": _milestone_created,
    "milestone_completed": _milestone_completed,
    "user_joined": _user_joined,
}
EVENT_TYPES: tuple[str, ...] = tuple(_APPLY)
"""The event types that change timeline state."""


# ------------------------------------------------------------------------------------------ Redis
T = TypeVar("T")
_TUPLE_OF_ROWS = {"milestones": MilestoneState}


def to_json(row: Any) -> str:
    return json.dumps(dataclasses.asdict(row), default=lambda v: {"$dt": v.isoformat()})


def from_json(cls: type[T], text: str | bytes) -> T:
    def hook(d: dict[str, Any]) -> Any:
        return datetime.fromisoformat(d["$dt"]) if set(d) == {"$dt"} else d

    def tuples(v: Any) -> Any:
        return tuple(tuples(x) for x in v) if isinstance(v, list) else v

    raw = json.loads(text, object_hook=hook)
    fields = {k: (tuple(_TUPLE_OF_ROWS[k](**m) for m in v) if k in _TUPLE_OF_ROWS else tuples(v))
              for k, v in raw.items()}
    return cls(**fields)


class RedisTimelineStore:
    """The online rows in Redis: one hash per tenant and kind (tasks, people, projects)."""

    def __init__(self, url: str, namespace: str = "timeline") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._ns = namespace

    def _key(self, tenant_id: str, kind: str) -> str:
        return f"{self._ns}:{tenant_id}:{kind}"

    def _get(self, cls: type[T], tenant_id: str, kind: str, key: str) -> T | None:
        value = self._redis.hget(self._key(tenant_id, kind), key)
        return None if value is None else from_json(cls, value)

    def task(self, tenant_id: str, task_id: str) -> TaskState | None:
        return self._get(TaskState, tenant_id, "tasks", task_id)

    def tasks(self, tenant_id: str, task_ids: Sequence[str]) -> list[TaskState]:
        if not task_ids:
            return []
        values = self._redis.hmget(self._key(tenant_id, "tasks"), list(task_ids))
        return [from_json(TaskState, v) for v in values if v is not None]

    def person(self, tenant_id: str, user_id: str) -> PersonState | None:
        return self._get(PersonState, tenant_id, "people", user_id)

    def project(self, tenant_id: str, project_id: str) -> ProjectState | None:
        return self._get(ProjectState, tenant_id, "projects", project_id)

    def put_task(self, tenant_id: str, task: TaskState) -> None:
        self._redis.hset(self._key(tenant_id, "tasks"), task.task_id, to_json(task))

    def put_person(self, tenant_id: str, person: PersonState) -> None:
        self._redis.hset(self._key(tenant_id, "people"), person.user_id, to_json(person))

    def put_project(self, tenant_id: str, project: ProjectState) -> None:
        self._redis.hset(self._key(tenant_id, "projects"), project.project_id, to_json(project))
