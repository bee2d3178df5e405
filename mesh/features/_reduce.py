"""Event -> aggregate updates. The one handler table: event type -> reducer.

Task-derived numbers on users and projects (open tasks, hours left, completions) are recomputed from
the task's state on every task change: the task's old contribution is removed and its new one added,
so they are a function of the task states alone and do not depend on arrival order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, NamedTuple

from google.protobuf.timestamp_pb2 import Timestamp
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.events import Envelope
from mesh.features._project import ProjectState
from mesh.features._state import Ctx, EntityState, Reducer, Reducers, Txn
from mesh.features._task import STATUS_DONE, TaskState
from mesh.features._tenant import TenantState
from mesh.features._user import Completion, UserState


def _ts(value: Timestamp) -> datetime | None:
    return value.ToDatetime(tzinfo=UTC) if value.seconds > 0 else None


class _Contribution(NamedTuple):
    """What a task adds to its people and its project (a named tuple: built twice per task event)."""

    assignee: str
    completed_by: str
    project_id: str
    is_open: bool
    estimate: float
    completion: tuple[str, float, float] | None
    """(task type, actual hours, estimate hours) of a done task; a plain tuple: this is built twice per task
    event, and a pydantic Completion here was the ingestor's largest single cost."""


def _contribution(t: TaskState) -> _Contribution:
    if t.is_open:
        return _Contribution(t.assignee_id, "", t.project_id, True, t.estimate_hours, None)
    return _Contribution(t.assignee_id, t.completed_by or t.assignee_id, t.project_id, False, t.estimate_hours,
                         (t.task_type, t.actual_hours, t.estimate_hours))


def _update_task(ctx: Ctx, task_id: str, change: Callable[[TaskState], None], project_id: str = "") -> None:
    task = ctx.txn.get(TaskState, ctx.tenant, task_id)
    before = _contribution(task)
    change(task)
    task.project_id = task.project_id or project_id  # the same for every event of a task: order-free
    task.touch(ctx.at)
    ctx.txn.put(task)
    after = _contribution(task)
    if after != before:
        _move(ctx, task_id, before, after)
    elif task.project_id:
        # The project's row time is the newest event of any of its tasks, whether or not this one moved a
        # count: which events move a count depends on arrival order, a maximum over all of them does not.
        _save(ctx, ctx.txn.get(ProjectState, ctx.tenant, task.project_id))


def _move(ctx: Ctx, task_id: str, before: _Contribution, after: _Contribution) -> None:
    for part, add in ((before, False), (after, True)):
        if part.assignee:
            user = ctx.txn.get(UserState, ctx.tenant, part.assignee)
            user.open_tasks.pop(task_id, None)
            if add and part.is_open:
                user.open_tasks[task_id] = part.estimate
            _save(ctx, user)
        if part.completed_by:
            user = ctx.txn.get(UserState, ctx.tenant, part.completed_by)
            user.completed.pop(task_id, None)
            if add and part.completion is not None:
                task_type, actual, estimate = part.completion
                user.completed[task_id] = Completion(task_type=task_type, actual_hours=actual,
                                                     estimate_hours=estimate)
            _save(ctx, user)
        if part.project_id:
            project = ctx.txn.get(ProjectState, ctx.tenant, part.project_id)
            project.tasks.pop(task_id, None)
            if add:
                project.tasks[task_id] = part.is_open
            _save(ctx, project)


def _save(ctx: Ctx, state: UserState | ProjectState | TenantState) -> None:
    state.touch(ctx.at)
    ctx.txn.put(state)


def _active(ctx: Ctx, user_id: str) -> None:
    """`user_id` did something at ctx.at: last_active is a maximum, so order does not matter."""
    if not user_id:
        return
    user = ctx.txn.get(UserState, ctx.tenant, user_id)
    if user.last_active is None or ctx.at > user.last_active:
        user.last_active = ctx.at
        _save(ctx, user)
    tenant = ctx.txn.get(TenantState, ctx.tenant, "")
    seconds = ctx.stamp[0] // 1_000_000  # int(ctx.at.timestamp()), from the stamp already computed
    if tenant.users.get(user_id, -1) < seconds:
        tenant.users[user_id] = seconds
        _save(ctx, tenant)


def _task_created(ctx: Ctx, env: Envelope) -> None:
    p = env.task_created

    def change(t: TaskState) -> None:
        if t.newer("created", ctx.stamp):
            t.project_id, t.milestone_id, t.created_at = p.project_id, p.milestone_id, ctx.at
            t.task_type = p.task_type
        _set(t, ctx, "due_at", _ts(p.due_at))  # task_updated sets it too: one stamp for both, or order leaks in
        _set(t, ctx, "priority", int(p.priority))
        _set(t, ctx, "required_skills", list(p.required_skills))
        _set(t, ctx, "estimate_hours", p.estimate_hours)
        _set(t, ctx, "status", int(e.TASK_STATUS_TODO))

    _update_task(ctx, p.task_id, change, p.project_id)
    _active(ctx, p.created_by)


def _set(t: TaskState, ctx: Ctx, name: str, value: object) -> None:
    """Last-writer-wins on field `name`: an older event never overwrites a newer one's value."""
    if t.newer(name, ctx.stamp):
        setattr(t, name, value)


def _task_updated(ctx: Ctx, env: Envelope) -> None:
    p = env.task_updated

    def change(t: TaskState) -> None:
        if p.HasField("priority"):
            _set(t, ctx, "priority", int(p.priority))
        if p.required_skills:
            _set(t, ctx, "required_skills", list(p.required_skills))
        if p.HasField("estimate_hours"):
            _set(t, ctx, "estimate_hours", p.estimate_hours)
        if p.due_at.seconds > 0:
            _set(t, ctx, "due_at", _ts(p.due_at))

    _update_task(ctx, p.task_id, change, p.project_id)
    _active(ctx, p.updated_by)


def _task_assigned(ctx: Ctx, env: Envelope) -> None:
    p = env.task_assigned
    _update_task(ctx, p.task_id, lambda t: _set(t, ctx, "assignee_id", p.assignee_id), p.project_id)
    _active(ctx, p.assigned_by)


def _task_status_changed(ctx: Ctx, env: Envelope) -> None:
    p = env.task_status_changed

    def change(t: TaskState) -> None:
        t.n_status_changes += 1
        _set(t, ctx, "status", int(p.to_status))

    _update_task(ctx, p.task_id, change, p.project_id)
    _active(ctx, p.actor_id)


def _task_completed(ctx: Ctx, env: Envelope) -> None:
    p = env.task_completed

    def change(t: TaskState) -> None:
        _set(t, ctx, "status", STATUS_DONE)
        if t.newer("completion", ctx.stamp):
            t.completed_by, t.actual_hours = p.assignee_id, p.actual_hours

    _update_task(ctx, p.task_id, change, p.project_id)
    _active(ctx, p.assignee_id)


def _task_commented(ctx: Ctx, env: Envelope) -> None:
    p = env.task_commented
    _update_task(ctx, p.task_id, lambda t: setattr(t, "n_comments", t.n_comments + 1), p.project_id)
    _active(ctx, p.author_id)


def _task_viewed(ctx: Ctx, env: Envelope) -> None:
    p = env.task_viewed
    _update_task(ctx, p.task_id, lambda t: setattr(t, "n_views", t.n_views + 1), p.project_id)
    _active(ctx, p.user_id)


def _project(ctx: Ctx, project_id: str) -> ProjectState:
    return ctx.txn.get(ProjectState, ctx.tenant, project_id)


def _project_created(ctx: Ctx, env: Envelope) -> None:
    p, project = env.project_created, _project(ctx, env.project_created.project_id)
    if project.newer("name", ctx.stamp):
        project.name = p.name
    if project.newer("owner", ctx.stamp):  # not under "name": a newer rename must not drop the owner
        project.owner_id = p.owner_id
    if project.newer("deadline", ctx.stamp):
        project.deadline = _ts(p.deadline)
    if project.newer("members", ctx.stamp):
        project.member_ids = list(p.member_ids)
    _save(ctx, project)
    _active(ctx, p.owner_id)


def _project_updated(ctx: Ctx, env: Envelope) -> None:
    p, project = env.project_updated, _project(ctx, env.project_updated.project_id)
    if p.HasField("name") and project.newer("name", ctx.stamp):
        project.name = p.name
    if p.deadline.seconds > 0 and project.newer("deadline", ctx.stamp):
        project.deadline = _ts(p.deadline)
    if p.member_ids and project.newer("members", ctx.stamp):
        project.member_ids = list(p.member_ids)
    _save(ctx, project)


def _milestone(ctx: Ctx, env: Envelope) -> None:
    created = env.WhichOneof("payload") == "milestone_created"
    p = env.milestone_created if created else env.milestone_completed
    project = _project(ctx, p.project_id)
    project.milestones[p.milestone_id] = project.milestones.get(p.milestone_id, False) or not created
    _save(ctx, project)


def _user_skills(ctx: Ctx, user: UserState, skills: Iterable[c.Skill]) -> None:
    if user.newer("skills", ctx.stamp):
        ordered = sorted(skills, key=lambda s: s.name)
        user.skills, user.skill_levels = [s.name for s in ordered], [int(s.level) for s in ordered]


def _user_joined(ctx: Ctx, env: Envelope) -> None:
    p, user = env.user_joined, ctx.txn.get(UserState, ctx.tenant, env.user_joined.user_id)
    if user.newer("profile", ctx.stamp):
        user.role, user.seniority, user.timezone = p.role, int(p.seniority), p.timezone
        user.capacity_hours_per_week = p.capacity_hours_per_week
    _user_skills(ctx, user, p.skills)
    _save(ctx, user)
    tenant = ctx.txn.get(TenantState, ctx.tenant, "")
    if p.user_id not in tenant.users:
        tenant.users[p.user_id] = 0
        _save(ctx, tenant)


def _user_skills_updated(ctx: Ctx, env: Envelope) -> None:
    p, user = env.user_skills_updated, ctx.txn.get(UserState, ctx.tenant, env.user_skills_updated.user_id)
    _user_skills(ctx, user, p.skills)
    _save(ctx, user)


REDUCERS: dict[str, Reducer] = {
    "task_created": _task_created,
    "task_updated": _task_updated,
    "task_assigned": _task_assigned,
    "task_status_changed": _task_status_changed,
    "task_completed": _task_completed,
    "task_commented": _task_commented,
    "task_viewed": _task_viewed,
    "project_created": _project_created,
    "project_updated": _project_updated,
    "milestone_created": _milestone,
    "milestone_completed": _milestone,
    "user_joined": _user_joined,
    "user_skills_updated": _user_skills_updated,
    "user_activity": lambda ctx, env: _active(ctx, env.user_activity.user_id),
    "suggestion_feedback": lambda ctx, env: _active(ctx, env.suggestion_feedback.user_id),
}
"""Event types not listed (automations, meetings, the mesh's own outputs) only go to the event log."""


_PEOPLE = ("user_id", "created_by", "updated_by", "assigned_by", "assignee_id", "actor_id", "author_id", "owner_id")
"""Payload fields naming a person whose state a reducer reads (the actor's activity, the assignee's load)."""


def _fields_of(event_type: str) -> tuple[bool, bool, tuple[str, ...]]:
    """(has task_id, has project_id, person fields) of an event type's payload, from the proto."""
    payload = Envelope.DESCRIPTOR.fields_by_name[event_type].message_type
    assert payload is not None, event_type
    names = set(payload.fields_by_name)
    return "task_id" in names, "project_id" in names, tuple(n for n in _PEOPLE if n in names)


_PREFETCH_FIELDS = {event_type: _fields_of(event_type) for event_type in REDUCERS}
"""Resolved once: the per-event hasattr/getattr probing was ~10% of apply time."""


def _prefetch(env: Envelope) -> list[tuple[type[EntityState], str]]:
    # What the reducers will most likely read, fetched in one round trip per batch; anything else (a task's
    # previous assignee) loads lazily, one round trip each: measured at ~40% of apply time before people
    # and the tenant were prefetched too.
    fields = _PREFETCH_FIELDS.get(env.type)
    if fields is None:
        return []
    has_task, has_project, people = fields
    payload: Any = getattr(env, env.type)
    tenant = env.tenant_id
    # the keys of state_key(), inlined (per event, on the ingestor's hot path)
    out: list[tuple[type[EntityState], str]] = [(TenantState, f"tenant:{tenant}:")]
    if has_task:
        out.append((TaskState, f"task:{tenant}:{payload.task_id}"))
    if has_project:
        project_id = payload.project_id
        if project_id:
            out.append((ProjectState, f"project:{tenant}:{project_id}"))
    for name in people:
        user_id = getattr(payload, name)
        if user_id:
            out.append((UserState, f"user:{tenant}:{user_id}"))
    return out


ENTITY_REDUCERS = Reducers("features", REDUCERS, _prefetch)
"""The mesh's entity aggregates (tenants, users, tasks, projects): what the feature ingestor applies."""


def reduce_event(txn: Txn, env: Envelope) -> None:
    """Apply one event to the entity aggregates it touches."""
    ENTITY_REDUCERS.reduce(txn, env)
