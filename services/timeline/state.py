"""The timeline service's state: per-task status history, per-person queues and speed, and per-project
deadlines, milestones, tasks and slip, as the service's own aggregates (``mesh.features``) with the
reducer table that keeps them (`INPUT_REDUCERS`).

The service applies each batch through the mesh's exactly-once store (`RedisAggregates`: the state and
the batch's applied-marks commit in one transaction); the offline replay that builds the training set
applies the same table one event at a time (`InMemoryTimelineStore`), so training and serving read
identical rows.

Every update is order-independent, so the live service (Kafka partition order, batches, redeliveries)
and a replay (time order) end in the same state:
- task fields, a person's capacity and a project's deadline are last-writer-wins on the event's stamp;
- a task's status history is a list kept sorted by (time, event id); whether it is done is read from it;
- a task's first completion (by stamp) is the one that counts;
- what a task adds to its people and its project (its place in its assignee's queue, its completion
  credited to who completed it, the project's actual-vs-estimated hours) are maps keyed by task id,
  recomputed from the task's state on every task change: the old entry is removed and the new one added;
- a project's tasks and milestones are maps keyed by id, listed in (creation time, id) order.
Sums over those maps are taken in key order when read, so they are exact whatever order built them.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, Field
from sunday.ml.v1 import events_pb2

from mesh.events import OTHER_TASK_TYPE, Envelope, InvalidEvent, status_name
from mesh.features import AggregateStore, Applied, Ctx, EntityState, InMemoryAggregates, Reducers, state_key

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DONE = "done"


class Completion(BaseModel):
    """A task_completed: when (with its event id, the tie-break), by whom, how many hours it took."""

    at: datetime
    event_id: str
    user_id: str = ""
    actual_hours: float = 0.0


class TaskState(EntityState):
    """One task and its status history (``statuses[i]`` entered at ``status_times[i]``)."""

    kind: ClassVar[str] = "timeline_task"

    project_id: str = ""
    milestone_id: str = ""
    task_type: str = OTHER_TASK_TYPE
    priority: int = 0
    estimate_hours: float = 0.0
    depends_on: tuple[str, ...] = ()
    assignee_id: str = ""
    assigned: datetime | None = None
    """when the current assignee got the task: the task's place in their queue"""
    assigned_hours: float = 0.0
    """the estimate when they got it: what the task weighs in their queue (a task's events arrive in order)"""
    created: bool = False
    """a task_created was applied (only then is the task known to the service)"""
    created_at: datetime = EPOCH
    due_at: datetime | None = None
    history: list[tuple[datetime, str, str]] = Field(default_factory=list)
    """(time, event id, status), sorted; creation counts as entering ``todo``"""
    completion: Completion | None = None
    text: str = ""

    @property
    def task_id(self) -> str:
        return self.entity_id

    @property
    def statuses(self) -> tuple[str, ...]:
        return tuple(s for _, _, s in self.history)

    @property
    def status_times(self) -> tuple[datetime, ...]:
        return tuple(t for t, _, _ in self.history)

    @property
    def done_at(self) -> datetime | None:
        """Start of the trailing run of 'done' (statuses and the completion, in time order); None when the
        latest status is not done (never finished, or reopened)."""
        marks = [(t, i, s == DONE) for t, i, s in self.history]  # sorted already
        if self.completion is not None:
            bisect.insort(marks, (self.completion.at, self.completion.event_id, True))
        start: datetime | None = None
        for t, _, done in reversed(marks):  # back from the latest while it is done
            if not done:
                break
            start = t
        return start

    @property
    def is_open(self) -> bool:
        return self.done_at is None

    @property
    def actual_hours(self) -> float:
        return self.completion.actual_hours if self.completion is not None else 0.0


class PersonState(EntityState):
    """A person: capacity, speed on finished work, and the queue of their open tasks (assignment order)."""

    kind: ClassVar[str] = "timeline_person"

    capacity_hours_per_week: float = 40.0
    queued: dict[str, tuple[datetime, float]] = Field(default_factory=dict)
    """task id -> (assigned at, estimated hours) of the open tasks the person holds"""
    finished: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """task id -> (actual hours, estimated hours) of the tasks the person completed"""

    @property
    def user_id(self) -> str:
        return self.entity_id

    @property
    def queue(self) -> tuple[tuple[str, float], ...]:
        """(task id, estimated hours) of the open tasks assigned to the person, oldest assignment first."""
        order = sorted(self.queued.items(), key=lambda kv: (kv[1][0], kv[0]))
        return tuple((task_id, hours) for task_id, (_, hours) in order)

    @property
    def done(self) -> int:
        return len(self.finished)

    @property
    def actual_hours(self) -> float:
        return sum(self.finished[k][0] for k in sorted(self.finished))

    @property
    def estimated_hours(self) -> float:
        """Estimates of the finished tasks (with `estimated_actual_hours`, the speed ratio)."""
        return sum(self.finished[k][1] for k in sorted(self.finished))

    @property
    def estimated_actual_hours(self) -> float:
        """Actual hours of the finished tasks that had an estimate."""
        return sum(self.finished[k][0] for k in sorted(self.finished) if self.finished[k][1] > 0)


@dataclass(frozen=True)
class MilestoneState:
    milestone_id: str
    due_at: datetime | None = None
    completed: bool = False


class Milestone(BaseModel):
    created: datetime
    due_at: datetime | None = None
    completed: bool = False


class ProjectState(EntityState):
    """A project: deadline, milestones, its tasks and how far actual hours ran over the estimates."""

    kind: ClassVar[str] = "timeline_project"

    start: datetime = EPOCH
    deadline: datetime | None = None
    planned_deadline: datetime | None = None
    """the deadline the project was created with (later moves do not change it): the planned duration"""
    milestone_map: dict[str, Milestone] = Field(default_factory=dict)
    task_map: dict[str, datetime] = Field(default_factory=dict)
    """task id -> when it was created"""
    finished: dict[str, tuple[float, float]] = Field(default_factory=dict)
    """task id -> (actual hours, estimated hours) of the completed tasks that had an estimate"""

    @property
    def project_id(self) -> str:
        return self.entity_id

    @property
    def milestones(self) -> tuple[MilestoneState, ...]:
        order = sorted(self.milestone_map.items(), key=lambda kv: (kv[1].created, kv[0]))
        return tuple(MilestoneState(k, m.due_at, m.completed) for k, m in order)

    @property
    def task_ids(self) -> tuple[str, ...]:
        return tuple(k for k, _ in sorted(self.task_map.items(), key=lambda kv: (kv[1], kv[0])))

    @property
    def done_actual_hours(self) -> float:
        return sum(self.finished[k][0] for k in sorted(self.finished))

    @property
    def done_estimated_hours(self) -> float:
        return sum(self.finished[k][1] for k in sorted(self.finished))


class TimelineStore(Protocol):
    """What forecasting reads (the committed state)."""

    def task(self, tenant_id: str, task_id: str) -> TaskState | None: ...

    def tasks(self, tenant_id: str, task_ids: Sequence[str]) -> list[TaskState]:
        """The known tasks among ``task_ids``, in that order."""
        ...

    def person(self, tenant_id: str, user_id: str) -> PersonState | None: ...

    def people(self, tenant_id: str, user_ids: Sequence[str]) -> list[PersonState | None]:
        """The people ``user_ids`` in that order (None where unknown): one round trip."""
        ...

    def project(self, tenant_id: str, project_id: str) -> ProjectState | None: ...


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


@dataclass(frozen=True)
class _Contribution:
    """What a task adds to others: its place in its assignee's queue, its completion to the person who
    completed it and (when it had an estimate) to its project."""

    holder: str
    queued: tuple[datetime, float] | None
    finisher: str
    finished: tuple[float, float] | None
    project_id: str


def _contribution(t: TaskState) -> _Contribution:
    queued = None
    if t.assignee_id and t.assigned is not None and t.created and t.is_open:
        queued = (t.assigned, t.assigned_hours)
    finisher, finished = "", None
    if t.completion is not None:
        finisher = t.completion.user_id or t.assignee_id
        finished = (t.completion.actual_hours, t.estimate_hours)
    return _Contribution(t.assignee_id if queued else "", queued, finisher, finished, t.project_id)


def _save(ctx: Ctx, state: EntityState) -> None:
    state.touch(ctx.at)
    ctx.txn.put(state)


def _update_task(ctx: Ctx, task_id: str, project_id: str, change: Callable[[TaskState], None]) -> None:
    task = ctx.txn.get(TaskState, ctx.tenant, task_id)
    before = _contribution(task)
    change(task)
    task.project_id = task.project_id or project_id  # the same in every event of a task: order-free
    _save(ctx, task)
    after = _contribution(task)
    if after == before:
        return
    for part, add in ((before, False), (after, True)):
        if part.holder:
            p = ctx.txn.get(PersonState, ctx.tenant, part.holder)
            p.queued.pop(task_id, None)
            if add and part.queued is not None:
                p.queued[task_id] = part.queued
            _save(ctx, p)
        if part.finisher:
            p = ctx.txn.get(PersonState, ctx.tenant, part.finisher)
            p.finished.pop(task_id, None)
            if add and part.finished is not None:
                p.finished[task_id] = part.finished
            _save(ctx, p)
        if part.project_id and (before.finished != after.finished or before.project_id != after.project_id):
            pr = ctx.txn.get(ProjectState, ctx.tenant, part.project_id)
            pr.finished.pop(task_id, None)
            if add and part.finished is not None and part.finished[1] > 0:
                pr.finished[task_id] = part.finished
            _save(ctx, pr)


def _set(ctx: Ctx, state: EntityState, name: str, value: Any) -> None:
    """Last-writer-wins on field ``name``: an older event never overwrites a newer one's value."""
    if state.newer(name, ctx.stamp):
        setattr(state, name, value)


def _status(task: TaskState, at: datetime, event_id: str, status: str) -> None:
    entry = (at, event_id, status)
    if entry not in task.history:
        task.history = sorted([*task.history, entry])


def _task_created(ctx: Ctx, env: Envelope) -> None:
    e, event_id = env.task_created, env.event_id

    def change(t: TaskState) -> None:
        t.created = True
        if t.newer("created", ctx.stamp):
            t.milestone_id, t.task_type = e.milestone_id, e.task_type or OTHER_TASK_TYPE
            t.depends_on, t.created_at, t.text = tuple(e.depends_on), ctx.at, f"{e.title}. {e.description}"
        _set(ctx, t, "priority", int(e.priority))
        _set(ctx, t, "estimate_hours", e.estimate_hours)
        _set(ctx, t, "due_at", _dt(e.due_at))
        _status(t, ctx.at, event_id, "todo")

    _update_task(ctx, e.task_id, e.project_id, change)
    project = ctx.txn.get(ProjectState, ctx.tenant, e.project_id)
    first = project.task_map.get(e.task_id)
    if first is None or ctx.at < first:
        project.task_map[e.task_id] = ctx.at
        _save(ctx, project)


def _task_updated(ctx: Ctx, env: Envelope) -> None:
    e = env.task_updated

    def change(t: TaskState) -> None:
        if e.HasField("priority"):
            _set(ctx, t, "priority", int(e.priority))
        if e.HasField("estimate_hours"):
            _set(ctx, t, "estimate_hours", e.estimate_hours)
        if _dt(e.due_at) is not None:
            _set(ctx, t, "due_at", _dt(e.due_at))

    _update_task(ctx, e.task_id, e.project_id, change)


def _task_assigned(ctx: Ctx, env: Envelope) -> None:
    e = env.task_assigned

    def change(t: TaskState) -> None:
        if t.newer("assignee_id", ctx.stamp):
            t.assignee_id, t.assigned, t.assigned_hours = e.assignee_id, ctx.at, t.estimate_hours

    _update_task(ctx, e.task_id, e.project_id, change)


def _task_status_changed(ctx: Ctx, env: Envelope) -> None:
    e = env.task_status_changed
    _update_task(ctx, e.task_id, e.project_id, lambda t: _status(t, ctx.at, env.event_id, status_name(e.to_status)))


def _task_completed(ctx: Ctx, env: Envelope) -> None:
    e = env.task_completed

    def change(t: TaskState) -> None:
        first = t.completion
        if first is None or (ctx.at, env.event_id) < (first.at, first.event_id):  # the first completion counts
            t.completion = Completion(at=ctx.at, event_id=env.event_id, user_id=e.assignee_id,
                                      actual_hours=e.actual_hours)

    _update_task(ctx, e.task_id, e.project_id, change)


def _project_created(ctx: Ctx, env: Envelope) -> None:
    e = env.project_created
    p = ctx.txn.get(ProjectState, ctx.tenant, e.project_id)
    if p.newer("created", ctx.stamp):
        p.start, p.planned_deadline = ctx.at, _dt(e.deadline)
    _set(ctx, p, "deadline", _dt(e.deadline))
    _save(ctx, p)


def _project_updated(ctx: Ctx, env: Envelope) -> None:
    e = env.project_updated
    p = ctx.txn.get(ProjectState, ctx.tenant, e.project_id)
    if _dt(e.deadline) is not None:
        _set(ctx, p, "deadline", _dt(e.deadline))
    _save(ctx, p)


def _milestone(ctx: Ctx, env: Envelope, project_id: str, milestone_id: str) -> tuple[ProjectState, Milestone]:
    p = ctx.txn.get(ProjectState, ctx.tenant, project_id)
    m = p.milestone_map.get(milestone_id)
    if m is None or ctx.at < m.created:
        m = p.milestone_map[milestone_id] = Milestone(created=ctx.at,
                                                      due_at=m.due_at if m else None,
                                                      completed=m.completed if m else False)
    return p, m


def _milestone_created(ctx: Ctx, env: Envelope) -> None:
    e = env.milestone_created
    p, m = _milestone(ctx, env, e.project_id, e.milestone_id)
    if p.newer(f"milestone:{e.milestone_id}", ctx.stamp):
        m.due_at = _dt(e.due_at)
    _save(ctx, p)


def _milestone_completed(ctx: Ctx, env: Envelope) -> None:
    e = env.milestone_completed
    p, m = _milestone(ctx, env, e.project_id, e.milestone_id)
    m.completed = True
    _save(ctx, p)


def _user_joined(ctx: Ctx, env: Envelope) -> None:
    e = env.user_joined
    p = ctx.txn.get(PersonState, ctx.tenant, e.user_id)
    _set(ctx, p, "capacity_hours_per_week", e.capacity_hours_per_week or 40.0)
    _save(ctx, p)


_PROJECT_READS = frozenset({"task_created", "task_completed", "project_created", "project_updated", "milestone_created",
                            "milestone_completed"})
"""Events whose reducer (most likely) changes the project row: the others do not read it."""


def _prefetch(env: Envelope) -> list[tuple[type[EntityState], str]]:
    # one round trip per batch for the task and project rows; people load lazily (only the changed ones)
    if env.type not in INPUT_REDUCERS.table:
        return []
    payload = getattr(env, env.type)
    out: list[tuple[type[EntityState], str]] = []
    task_id = str(getattr(payload, "task_id", "") or "")
    if task_id:
        out.append((TaskState, state_key(TaskState.kind, env.tenant_id, task_id)))
    project_id = str(getattr(payload, "project_id", "") or "")
    if project_id and env.type in _PROJECT_READS:
        out.append((ProjectState, state_key(ProjectState.kind, env.tenant_id, project_id)))
    return out


INPUT_REDUCERS = Reducers("timeline", {
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
}, _prefetch)
"""The timeline aggregates of the input events: applied by the service (live, with the records of its own
outputs: `alerts.output_reducers`) and by the training replay, nowhere else."""

EVENT_TYPES: tuple[str, ...] = INPUT_REDUCERS.event_types
"""The event types that change timeline state."""
PROJECT_EVENTS = frozenset({"project_created", "project_updated", "milestone_created", "milestone_completed"})


def project_of(env: Envelope) -> str | None:
    """The project an event concerns (None: none, e.g. a user joining): read from the event alone."""
    if env.type not in INPUT_REDUCERS.table or env.type == "user_joined":
        return None
    return str(getattr(env, env.type).project_id) or None


# ------------------------------------------------------------------------------------------ reading
class TimelineState:
    """The timeline state in a mesh aggregate store (Redis in the service, memory in the replay): apply
    batches exactly once, read the committed rows (`TimelineStore`)."""

    def __init__(self, store: AggregateStore | None = None) -> None:
        self.store: AggregateStore = store or InMemoryAggregates(INPUT_REDUCERS)

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        """Apply events once each, atomically with their applied-marks (see ``mesh.features``)."""
        return self.store.apply(events, require_built=require_built)

    def task(self, tenant_id: str, task_id: str) -> TaskState | None:
        found = self.tasks(tenant_id, [task_id])
        return found[0] if found else None

    def tasks(self, tenant_id: str, task_ids: Sequence[str]) -> list[TaskState]:
        if not task_ids:
            return []
        return [t for t in self.store.load_many(TaskState, tenant_id, task_ids) if t is not None and t.created]

    def person(self, tenant_id: str, user_id: str) -> PersonState | None:
        return self.people(tenant_id, [user_id])[0]

    def people(self, tenant_id: str, user_ids: Sequence[str]) -> list[PersonState | None]:
        return self.store.load_many(PersonState, tenant_id, user_ids) if user_ids else []

    def project(self, tenant_id: str, project_id: str) -> ProjectState | None:
        return self.store.load(ProjectState, tenant_id, project_id)

    def rows(self) -> dict[str, dict[str, Any]]:
        """Every task, person and project row by key, as plain data (maps compare regardless of the order
        they were built in): what "the live state equals a replay" compares."""
        out: dict[str, dict[str, Any]] = {}
        for kind in (TaskState, PersonState, ProjectState):
            for key in self.store.keys(kind.kind):
                _, tenant_id, entity_id = key.split(":", 2)
                row = self.store.load(kind, tenant_id, entity_id)
                if row is not None:
                    out[key] = row.model_dump()
        return out


class InMemoryTimelineStore(TimelineState):
    """The state in memory (tests, the offline replay that builds the training set)."""

    def __init__(self, store: InMemoryAggregates | None = None) -> None:
        self._memory = store or InMemoryAggregates(INPUT_REDUCERS)
        super().__init__(self._memory)

    def snapshot(self) -> InMemoryTimelineStore:
        """A copy that later events do not change."""
        return InMemoryTimelineStore(self._memory.snapshot())


def apply_event(store: TimelineState, env: Envelope) -> str | None:
    """Apply one event (the replay's step); return the id of the project it concerns (None: no project)."""
    store.apply([env])
    return project_of(env)
