"""The automation service's state: the facts mining, the model and the validator read, kept by one reducer
table through the mesh's exactly-once aggregate stores (``RedisAggregates`` live, ``InMemoryAggregates``
for a rebuild from the event log or an offline bench).

Every update is order-independent: facts are maps keyed by the event id that produced them (a redelivery
writes the same entry; the store's applied-marks make it once anyway), task fields are last-writer-wins
on the event stamp, and sequences are ordered only when read (:mod:`services.automation.sequences`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from pydantic import BaseModel, Field
from sunday.ml.v1 import events_pb2 as pb

from mesh.events import Envelope
from mesh.features import AggregateStore, Applied, Ctx, EntityState, InMemoryAggregates, Reducers


class Trigger(BaseModel):
    """A task event that may start a workflow."""

    at: float
    """Event time, seconds since the epoch."""
    kind: str
    """Envelope type: task_created, task_status_changed or task_assigned."""
    status: str = ""
    """to_status of a status change (enum name)."""
    assignee: str = ""
    """The assignee of a task_assigned."""


class Action(BaseModel):
    """A manual board action of a person on a task (``user_activity`` with resource ``"<task>:<detail>"``)."""

    at: float
    task_id: str
    action: str
    detail: str
    count: int = 1

    @property
    def token(self) -> str:
        return f"{self.action}:{self.detail}"


class TaskFacts(EntityState):
    kind: ClassVar[str] = "automation_task"

    project_id: str = ""
    task_type: str = ""
    priority: str = ""
    triggers: dict[str, Trigger] = Field(default_factory=dict)
    """event id -> trigger."""


class PersonFacts(EntityState):
    kind: ClassVar[str] = "automation_person"

    role: str = ""
    actions: dict[str, Action] = Field(default_factory=dict)
    """event id -> manual action on a task."""
    touched: dict[str, str] = Field(default_factory=dict)
    """task id -> project id ("" when the event did not say) of every task the person created, was
    assigned, changed or commented on."""
    member_of: list[str] = Field(default_factory=list)
    """Sorted set of the projects the person is a member of. With the projects of the touched tasks: the
    projects the person can see."""


class Automation(BaseModel):
    automation_id: str
    created_by: str
    trigger: str
    actions: list[str] = Field(default_factory=list)


class TenantFacts(EntityState):
    kind: ClassVar[str] = "automation_tenant"

    people: list[str] = Field(default_factory=list)
    """Sorted set of the people seen acting."""
    projects: dict[str, list[str]] = Field(default_factory=dict)
    """project id -> sorted task ids."""
    automations: dict[str, Automation] = Field(default_factory=dict)
    """The automations that exist (cycle checks)."""


def _epoch(ctx: Ctx) -> float:
    return ctx.at.timestamp()


def _tenant_add(ctx: Ctx, user_id: str = "", project_id: str = "", task_id: str = "") -> None:
    tenant = ctx.txn.get(TenantFacts, ctx.tenant, "")
    changed = False
    if user_id and user_id not in tenant.people:
        tenant.people = sorted({*tenant.people, user_id})
        changed = True
    if project_id and task_id and task_id not in tenant.projects.get(project_id, []):
        tenant.projects[project_id] = sorted({*tenant.projects.get(project_id, []), task_id})
        changed = True
    if changed:
        tenant.touch(ctx.at)
        ctx.txn.put(tenant)


def _touch(ctx: Ctx, user_id: str, task_id: str, project_id: str) -> None:
    if not user_id:
        return
    person = ctx.txn.get(PersonFacts, ctx.tenant, user_id)
    if person.touched.get(task_id) != project_id or task_id not in person.touched:
        person.touched[task_id] = project_id or person.touched.get(task_id, "")
        person.touch(ctx.at)
        ctx.txn.put(person)
    _tenant_add(ctx, user_id=user_id)


def _task(ctx: Ctx, env: Envelope, task_id: str, project_id: str, trigger: Trigger | None) -> TaskFacts:
    task = ctx.txn.get(TaskFacts, ctx.tenant, task_id)
    task.project_id = task.project_id or project_id
    if trigger is not None:
        task.triggers[env.event_id] = trigger
    task.touch(ctx.at)
    ctx.txn.put(task)
    _tenant_add(ctx, project_id=project_id, task_id=task_id)
    return task


def _task_created(ctx: Ctx, env: Envelope) -> None:
    e = env.task_created
    task = _task(ctx, env, e.task_id, e.project_id, Trigger(at=_epoch(ctx), kind="task_created"))
    if task.newer("created", ctx.stamp):
        task.task_type, task.priority = e.task_type, pb.Priority.Name(e.priority)
    _touch(ctx, e.created_by, e.task_id, e.project_id)


def _task_updated(ctx: Ctx, env: Envelope) -> None:
    e = env.task_updated
    task = _task(ctx, env, e.task_id, e.project_id, None)
    if e.HasField("priority") and task.newer("priority", ctx.stamp):
        task.priority = pb.Priority.Name(e.priority)


def _task_assigned(ctx: Ctx, env: Envelope) -> None:
    e = env.task_assigned
    _task(ctx, env, e.task_id, e.project_id, Trigger(at=_epoch(ctx), kind="task_assigned", assignee=e.assignee_id))
    _touch(ctx, e.assignee_id, e.task_id, e.project_id)
    _touch(ctx, e.assigned_by, e.task_id, e.project_id)


def _status_changed(ctx: Ctx, env: Envelope) -> None:
    e = env.task_status_changed
    trigger = Trigger(at=_epoch(ctx), kind="task_status_changed", status=pb.TaskStatus.Name(e.to_status))
    _task(ctx, env, e.task_id, e.project_id, trigger)
    _touch(ctx, e.actor_id, e.task_id, e.project_id)


def _commented(ctx: Ctx, env: Envelope) -> None:
    e = env.task_commented
    _task(ctx, env, e.task_id, e.project_id, None)
    _touch(ctx, e.author_id, e.task_id, e.project_id)


def _user_activity(ctx: Ctx, env: Envelope) -> None:
    e = env.user_activity
    task_id, sep, detail = e.resource.partition(":")
    if not sep or not task_id or not detail:
        return  # logins, exports, edits of a whole board: not a step an automation could take
    person = ctx.txn.get(PersonFacts, ctx.tenant, e.user_id)
    person.actions[env.event_id] = Action(at=_epoch(ctx), task_id=task_id, action=e.action, detail=detail,
                                          count=max(int(e.count), 1))
    person.touched.setdefault(task_id, "")
    person.touch(ctx.at)
    ctx.txn.put(person)
    _tenant_add(ctx, user_id=e.user_id)


def _user_joined(ctx: Ctx, env: Envelope) -> None:
    e = env.user_joined
    person = ctx.txn.get(PersonFacts, ctx.tenant, e.user_id)
    if person.newer("role", ctx.stamp):
        person.role = e.role
    person.touch(ctx.at)
    ctx.txn.put(person)
    _tenant_add(ctx, user_id=e.user_id)


def _project_members(ctx: Ctx, project_id: str, member_ids: Sequence[str]) -> None:
    tenant = ctx.txn.get(TenantFacts, ctx.tenant, "")
    if project_id not in tenant.projects:
        tenant.projects[project_id] = []
        tenant.touch(ctx.at)
        ctx.txn.put(tenant)
    for user_id in member_ids:
        person = ctx.txn.get(PersonFacts, ctx.tenant, user_id)
        if project_id not in person.member_of:
            person.member_of = sorted({*person.member_of, project_id})
            person.touch(ctx.at)
            ctx.txn.put(person)


def _automation_created(ctx: Ctx, env: Envelope) -> None:
    e = env.automation_created
    tenant = ctx.txn.get(TenantFacts, ctx.tenant, "")
    tenant.automations[e.automation_id] = Automation(automation_id=e.automation_id, created_by=e.created_by,
                                                     trigger=e.trigger, actions=list(e.actions))
    tenant.touch(ctx.at)
    ctx.txn.put(tenant)


AUTOMATION_REDUCERS = Reducers("automation", {
    "task_created": _task_created,
    "task_updated": _task_updated,
    "task_assigned": _task_assigned,
    "task_status_changed": _status_changed,
    "task_commented": _commented,
    "user_activity": _user_activity,
    "user_joined": _user_joined,
    "automation_created": _automation_created,
    "project_created": lambda ctx, env: _project_members(ctx, env.project_created.project_id,
                                                         env.project_created.member_ids),
    "project_updated": lambda ctx, env: _project_members(ctx, env.project_updated.project_id,
                                                         env.project_updated.member_ids),
})
"""The automation facts: applied by the service (live) and by a rebuild from the event log, nowhere else."""

EVENT_TYPES: tuple[str, ...] = AUTOMATION_REDUCERS.event_types


class FactStore:
    """The automation facts in a mesh aggregate store (Redis in the service, memory offline)."""

    def __init__(self, store: AggregateStore | None = None) -> None:
        self.store: AggregateStore = store or InMemoryAggregates(AUTOMATION_REDUCERS)

    def apply(self, events: Sequence[Envelope], *, require_built: bool = False) -> Applied:
        """Apply events once each, atomically with their applied-marks."""
        return self.store.apply(events, require_built=require_built)

    def tenant(self, tenant_id: str) -> TenantFacts:
        return self.store.load(TenantFacts, tenant_id, "") or TenantFacts(tenant_id=tenant_id)

    def people(self, tenant_id: str, user_ids: Sequence[str]) -> list[PersonFacts]:
        return [p or PersonFacts(tenant_id=tenant_id, entity_id=u)
                for u, p in zip(user_ids, self.store.load_many(PersonFacts, tenant_id, user_ids), strict=True)]

    def tasks(self, tenant_id: str, task_ids: Sequence[str]) -> dict[str, TaskFacts]:
        found = self.store.load_many(TaskFacts, tenant_id, task_ids)
        return {t: f for t, f in zip(task_ids, found, strict=True) if f is not None}

    def tenants(self) -> list[str]:
        return sorted({k.split(":", 2)[1] for k in self.store.keys(TenantFacts.kind)})
