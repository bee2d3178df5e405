"""The assignment service's state: its own aggregates (people, tasks, who is active per tenant) and the
reducer table that keeps them, applied through the mesh's exactly-once store (``mesh.features``).

Every update is order-independent, so the live service (Kafka partition order, batches, redeliveries)
and the training replay (time order, one event at a time) end in the same state:
- profile and skills, task fields and the assignee are last-writer-wins on the event's stamp;
- membership of projects and the tasks ever assigned to a person are sets;
- workload (open tasks) and throughput (completed tasks) of a person are recomputed from the task's
  state on every task change: the task's old contribution is removed and its new one added.
The store applies each event once (its applied-mark commits with the state), so the counters stay exact
under redelivery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Literal

from pydantic import BaseModel, Field
from sunday.ml.v1 import common_pb2 as c

from mesh.events import Envelope, occurred_at, task_type_slot
from mesh.features import AggregateStore, Applied, Ctx, EntityState, InMemoryAggregates, Reducers, state_key
from services.assignment.features import PersonFeatures, TaskFeatures


class Completion(BaseModel):
    task_type: str
    actual_hours: float


class PersonState(EntityState):
    """One person of a tenant, as the ranker needs them."""

    kind: ClassVar[str] = "assignment_person"

    skills: dict[str, int] = Field(default_factory=dict)
    seniority: int = 0
    role: str = ""
    capacity_hours: float = 40.0
    active: bool = False
    projects: list[str] = Field(default_factory=list)
    """Projects the person is a member of (sorted set)."""
    open_tasks: dict[str, float] = Field(default_factory=dict)
    """task id -> estimated hours, for the open tasks assigned to the person (derived from task state)."""
    completed: dict[str, Completion] = Field(default_factory=dict)
    """task id -> completion, for the done tasks the person completed (derived from task state)."""
    assigned: dict[str, str] = Field(default_factory=dict)
    """task id -> project id of every task ever assigned to the person."""


class TaskState(EntityState):
    """One task: what the ranker reads, and who holds it."""

    kind: ClassVar[str] = "assignment_task"

    project_id: str = ""
    task_type: str = ""
    priority: int = 0
    required_skills: list[str] = Field(default_factory=list)
    estimate_hours: float = 0.0
    title: str = ""
    description: str = ""
    created: bool = False
    """A task_created was applied (only then is the task ranked)."""
    assignee_id: str = ""
    done: bool = False
    completed_by: str = ""
    actual_hours: float = 0.0


class TenantState(EntityState):
    """Who is active in a tenant (people that joined)."""

    kind: ClassVar[str] = "assignment_tenant"

    people: list[str] = Field(default_factory=list)
    """User ids (sorted set): the candidates of every task of the tenant."""


@dataclass(frozen=True)
class Label:
    """What happened to a task: who it was assigned to, or who completed it (a training label).
    ``event_id`` is the event it came from: the label's identity (sinks append at least once)."""

    tenant_id: str
    task_id: str
    user_id: str
    kind: Literal["assigned", "completed"]
    at: datetime
    event_id: str = ""


# ------------------------------------------------------------------------------------------ reducers
@dataclass(frozen=True)
class _Contribution:
    """What a task adds to its people: an open task to its assignee, a completion to who completed it."""

    holder: str
    estimate: float
    completed_by: str
    completion: Completion | None


def _contribution(t: TaskState) -> _Contribution:
    if t.done:
        done_by = t.completed_by or t.assignee_id
        return _Contribution("", 0.0, done_by, Completion(task_type=task_type_slot(t.task_type),
                                                           actual_hours=max(t.actual_hours, 0.0)))
    return _Contribution(t.assignee_id, max(t.estimate_hours, 0.0), "", None)


def _person(ctx: Ctx, user_id: str) -> PersonState:
    return ctx.txn.get(PersonState, ctx.tenant, user_id)


def _save(ctx: Ctx, state: EntityState) -> None:
    state.touch(ctx.at)
    ctx.txn.put(state)


def _update_task(ctx: Ctx, task_id: str, change: Callable[[TaskState], None]) -> None:
    task = ctx.txn.get(TaskState, ctx.tenant, task_id)
    before = _contribution(task)
    change(task)
    _save(ctx, task)
    after = _contribution(task)
    if after == before:
        return
    for part, add in ((before, False), (after, True)):
        if part.holder:
            p = _person(ctx, part.holder)
            p.open_tasks.pop(task_id, None)
            if add:
                p.open_tasks[task_id] = part.estimate
            _save(ctx, p)
        if part.completed_by:
            p = _person(ctx, part.completed_by)
            p.completed.pop(task_id, None)
            if add and part.completion is not None:
                p.completed[task_id] = part.completion
            _save(ctx, p)


def _set(ctx: Ctx, state: EntityState, name: str, value: object) -> None:
    """Last-writer-wins on field `name`: an older event never overwrites a newer one's value."""
    if state.newer(name, ctx.stamp):
        setattr(state, name, value)


def _skills(skills: Sequence[c.Skill]) -> dict[str, int]:
    return {s.name: int(s.level) for s in skills}


def _user_joined(ctx: Ctx, env: Envelope) -> None:
    e, p = env.user_joined, _person(ctx, env.user_joined.user_id)
    if p.newer("profile", ctx.stamp):
        p.seniority, p.role, p.capacity_hours = int(e.seniority), e.role, e.capacity_hours_per_week or 40.0
    _set(ctx, p, "skills", _skills(e.skills))
    p.active = True
    _save(ctx, p)
    tenant = ctx.txn.get(TenantState, ctx.tenant, "")
    if e.user_id not in tenant.people:
        tenant.people = sorted({*tenant.people, e.user_id})
        _save(ctx, tenant)


def _skills_updated(ctx: Ctx, env: Envelope) -> None:
    p = _person(ctx, env.user_skills_updated.user_id)
    _set(ctx, p, "skills", _skills(env.user_skills_updated.skills))
    _save(ctx, p)


def _members(ctx: Ctx, project_id: str, member_ids: Sequence[str]) -> None:
    for user_id in member_ids:
        p = _person(ctx, user_id)
        if project_id not in p.projects:
            p.projects = sorted({*p.projects, project_id})
            _save(ctx, p)


def _task_created(ctx: Ctx, env: Envelope) -> None:
    e = env.task_created

    def change(t: TaskState) -> None:
        t.created = True
        t.project_id = t.project_id or e.project_id  # the same in every event of a task: order-free
        if t.newer("created", ctx.stamp):
            t.task_type, t.title, t.description = e.task_type, e.title, e.description
        _set(ctx, t, "priority", int(e.priority))
        _set(ctx, t, "required_skills", list(e.required_skills))
        _set(ctx, t, "estimate_hours", e.estimate_hours)

    _update_task(ctx, e.task_id, change)


def _task_updated(ctx: Ctx, env: Envelope) -> None:
    e = env.task_updated

    def change(t: TaskState) -> None:
        t.project_id = t.project_id or e.project_id
        if e.HasField("title"):
            _set(ctx, t, "title", e.title)
        if e.HasField("description"):
            _set(ctx, t, "description", e.description)
        if e.HasField("priority"):
            _set(ctx, t, "priority", int(e.priority))
        if e.required_skills:
            _set(ctx, t, "required_skills", list(e.required_skills))
        if e.HasField("estimate_hours"):
            _set(ctx, t, "estimate_hours", e.estimate_hours)

    _update_task(ctx, e.task_id, change)


def _task_assigned(ctx: Ctx, env: Envelope) -> None:
    e = env.task_assigned

    def change(t: TaskState) -> None:
        t.project_id = t.project_id or e.project_id
        _set(ctx, t, "assignee_id", e.assignee_id)

    _update_task(ctx, e.task_id, change)
    p = _person(ctx, e.assignee_id)  # every assignment counts, whichever is the latest: a set
    if e.task_id not in p.assigned:
        p.assigned[e.task_id] = e.project_id
        _save(ctx, p)


def _task_completed(ctx: Ctx, env: Envelope) -> None:
    e = env.task_completed

    def change(t: TaskState) -> None:
        t.project_id = t.project_id or e.project_id
        t.done = True
        if t.newer("completion", ctx.stamp):
            t.completed_by, t.actual_hours = e.assignee_id, e.actual_hours

    _update_task(ctx, e.task_id, change)


def _prefetch(env: Envelope) -> list[tuple[type[EntityState], str]]:
    # one round trip per batch for the task rows; people load lazily (only the changed ones)
    field = env.WhichOneof("payload") or ""
    task_id = str(getattr(getattr(env, field), "task_id", "")) if field else ""
    return [(TaskState, state_key(TaskState.kind, env.tenant_id, task_id))] if task_id else []


ASSIGNMENT_REDUCERS = Reducers("assignment", {
    "user_joined": _user_joined,
    "user_skills_updated": _skills_updated,
    "project_created": lambda ctx, env: _members(ctx, env.project_created.project_id,
                                                 env.project_created.member_ids),
    "project_updated": lambda ctx, env: _members(ctx, env.project_updated.project_id,
                                                 env.project_updated.member_ids),
    "task_created": _task_created,
    "task_updated": _task_updated,
    "task_assigned": _task_assigned,
    "task_completed": _task_completed,
}, _prefetch)
"""The assignment aggregates: applied by the service (live) and by the training replay, nowhere else."""

EVENT_TYPES: tuple[str, ...] = ASSIGNMENT_REDUCERS.event_types
"""The event types that change assignment features."""


# ------------------------------------------------------------------------------------------ reading
def person_features(s: PersonState) -> PersonFeatures:
    """The ranker's row of a person (sums over the derived maps)."""
    done: dict[str, int] = {}
    hours: dict[str, float] = {}
    for _, completion in sorted(s.completed.items()):  # one summation order, whatever the arrival order
        done[completion.task_type] = done.get(completion.task_type, 0) + 1
        hours[completion.task_type] = hours.get(completion.task_type, 0.0) + completion.actual_hours
    by_project: dict[str, int] = {}
    for project in s.assigned.values():
        by_project[project] = by_project.get(project, 0) + 1
    return PersonFeatures(
        user_id=s.entity_id, skills=dict(sorted(s.skills.items())), seniority=s.seniority, role=s.role,
        capacity_hours=s.capacity_hours, open_tasks=len(s.open_tasks),
        open_hours=sum(h for _, h in sorted(s.open_tasks.items())),
        done_by_type=done, hours_by_type=hours, assigned_by_project=by_project, assigned_total=len(s.assigned),
        projects=frozenset(s.projects), active=s.active, as_of=s.timestamp())


def task_features(t: TaskState) -> TaskFeatures:
    """The ranker's row of a task."""
    return TaskFeatures(task_id=t.entity_id, project_id=t.project_id, task_type=task_type_slot(t.task_type),
                        priority=t.priority, required_skills=tuple(t.required_skills),
                        estimate_hours=t.estimate_hours, text=f"{t.title} {t.description}", as_of=t.timestamp())


class StateStore:
    """The assignment state in a mesh aggregate store (Redis in the service, memory in the replay)."""

    def __init__(self, store: AggregateStore | None = None) -> None:
        self.store: AggregateStore = store or InMemoryAggregates(ASSIGNMENT_REDUCERS)

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        """Apply events once each, atomically with their applied-marks (see ``mesh.features``)."""
        return self.store.apply(events, require_built=require_built)

    def active_ids(self, tenant_id: str) -> list[str]:
        """The active people of a tenant, sorted by id."""
        tenant = self.store.load(TenantState, tenant_id, "")
        return [] if tenant is None else list(tenant.people)

    def people(self, tenant_id: str, user_ids: Sequence[str]) -> list[PersonFeatures]:
        """The rows of ``user_ids`` that exist, in that order (one round trip)."""
        return [person_features(s) for s in self.store.load_many(PersonState, tenant_id, user_ids) if s is not None]

    def person(self, tenant_id: str, user_id: str) -> PersonFeatures | None:
        found = self.people(tenant_id, [user_id])
        return found[0] if found else None

    def task(self, tenant_id: str, task_id: str) -> TaskFeatures | None:
        """A task's row once its task_created is applied (None before)."""
        state = self.store.load(TaskState, tenant_id, task_id)
        return None if state is None or not state.created else task_features(state)

    def tasks(self, tenant_id: str, task_ids: Sequence[str]) -> list[TaskFeatures | None]:
        """:meth:`task` of each id, in order, in one round trip (the ranker's batches)."""
        return [None if s is None or not s.created else task_features(s)
                for s in self.store.load_many(TaskState, tenant_id, task_ids)]

    def assignee(self, tenant_id: str, task_id: str) -> str:
        state = self.store.load(TaskState, tenant_id, task_id)
        return "" if state is None else state.assignee_id


def labels_of(state: StateStore, events: Sequence[Envelope]) -> list[Label]:
    """The training labels of applied events: who a task was assigned to, and who completed it (the
    event's assignee, else the task's holder). Keyed by event id: appending them twice is harmless."""
    out: list[Label] = []
    for env in events:
        if env.type == "task_assigned":
            e = env.task_assigned
            out.append(Label(env.tenant_id, e.task_id, e.assignee_id, "assigned", occurred_at(env), env.event_id))
        elif env.type == "task_completed":
            e2 = env.task_completed
            user_id = e2.assignee_id or state.assignee(env.tenant_id, e2.task_id)
            if user_id:
                out.append(Label(env.tenant_id, e2.task_id, user_id, "completed", occurred_at(env), env.event_id))
    return out
