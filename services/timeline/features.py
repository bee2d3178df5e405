"""Timeline features: one open task, as of `now`, -> (event sequence, static vector) for TaskDurationNet.

The sequence is the task's status history (creation counts as entering `todo`). The static vector holds
the task (type, priority, estimate, age, time in the current status, open dependencies, due date, story
points predicted from its text by the effort prior), its
assignee (speed on finished work, queue of open work ahead of this task, capacity), its project (how far
actual hours ran over estimates) and the clock (hour of day, weekend): the target is wall-clock hours, so
nights, weekends and the queue ahead matter as much as the work itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from mesh.events import TASK_TYPE_SLOTS, task_type_slot
from services.timeline.effort_slot import CONSTANT_POINTS, ConstantPrior, EffortPrior
from services.timeline.effort_slot import feature as effort_feature
from services.timeline.state import PersonState, ProjectState, TaskState, TimelineStore
from services.timeline.tensors import F32, STEP_FEATURES, pad_sequences, step_features

FEATURE_SCHEMA = "timeline-v2"
"""Bumped whenever the layout changes; stored in every exported model and checked when serving."""
UNESTIMATED_HOURS = 8.0
"""What a task without an estimate counts for in a person's queue."""
STATIC_NAMES: tuple[str, ...] = (
    *(f"type_{t}" for t in TASK_TYPE_SLOTS), "priority", "log_estimate", "has_estimate", "has_assignee",
    "assignee_speed", "assignee_done", "queue_hours_ahead", "queue_tasks_ahead", "assignee_open_hours",
    "assignee_capacity", "project_slip", "open_deps", "log_age", "log_in_status", "due_in", "has_due",
    "hour_sin", "hour_cos", "weekend", "n_events", "effort_points",
)
N_STATIC = len(STATIC_NAMES)
VIEWS = ("task_state", "person_state", "project_state")
"""Feature views named in the provenance (with the event time of the newest value used)."""


@dataclass(frozen=True)
class TaskInputs:
    """Inputs of one batch of tasks, in the model's input order."""

    events: F32
    event_mask: F32
    static: F32

    def as_feeds(self) -> dict[str, F32]:
        return {"events": self.events, "event_mask": self.event_mask, "static": self.static}


def _hours(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600.0


def _shrunk_log_ratio(actual: float, estimated: float, prior: float = 8.0) -> float:
    return math.log((actual + prior) / (estimated + prior))


def sequence(task: TaskState, now: datetime) -> F32:
    times = [t for t in task.status_times if t <= now] or [task.created_at]
    statuses = list(task.statuses[: len(times)]) or ["todo"]
    return step_features(statuses, [max(_hours(task.created_at, t), 0.0) for t in times])


def queue_ahead(person: PersonState | None, task_id: str) -> tuple[float, int]:
    """Estimated hours and number of the person's open tasks assigned before this one."""
    if person is None:
        return 0.0, 0
    ids = [q[0] for q in person.queue]
    ahead = person.queue[: ids.index(task_id)] if task_id in ids else person.queue
    return sum(h if h > 0 else UNESTIMATED_HOURS for _, h in ahead), len(ahead)


def static_vector(task: TaskState, person: PersonState | None, project: ProjectState | None,
                  open_deps: int, now: datetime, effort_points: float = CONSTANT_POINTS) -> F32:
    hours_ahead, n_ahead = queue_ahead(person, task.task_id)
    open_hours = sum(h if h > 0 else UNESTIMATED_HOURS for _, h in person.queue) if person else 0.0
    last = max((t for t in task.status_times if t <= now), default=task.created_at)
    due = 0.0 if task.due_at is None else _hours(now, task.due_at)
    hour = now.hour + now.minute / 60.0
    values = [
        *(float(task_type_slot(task.task_type) == t) for t in TASK_TYPE_SLOTS),
        task.priority / 4.0, math.log1p(max(task.estimate_hours, 0.0)), float(task.estimate_hours > 0),
        float(bool(task.assignee_id)),
        _shrunk_log_ratio(person.estimated_actual_hours, person.estimated_hours) if person else 0.0,
        math.log1p(person.done) if person else 0.0,
        math.log1p(hours_ahead), math.log1p(n_ahead), math.log1p(open_hours),
        (person.capacity_hours_per_week if person else 40.0) / 40.0,
        _shrunk_log_ratio(project.done_actual_hours, project.done_estimated_hours, 40.0) if project else 0.0,
        math.log1p(open_deps), math.log1p(max(_hours(task.created_at, now), 0.0)),
        math.log1p(max(_hours(last, now), 0.0)), math.copysign(math.log1p(abs(due)), due) / 5.0,
        float(task.due_at is not None), math.sin(2 * math.pi * hour / 24), math.cos(2 * math.pi * hour / 24),
        float(now.weekday() >= 5), math.log1p(len(task.statuses)), effort_feature(effort_points),
    ]
    return np.asarray(values, dtype=np.float32)


def task_inputs(store: TimelineStore, tenant_id: str, tasks: Sequence[TaskState], now: datetime,
                effort: EffortPrior | None = None) -> TaskInputs:
    """The model inputs of ``tasks`` (of one tenant) as of ``now``, read from ``store`` in a few round trips
    (all assignees at once, all dependencies at once, each project once), whatever the number of tasks."""
    points = (effort or ConstantPrior()).points([t.text for t in tasks])
    seqs: list[F32] = []
    statics: list[F32] = []
    assignees = list(dict.fromkeys(t.assignee_id for t in tasks if t.assignee_id))
    people: dict[str, PersonState | None] = dict(zip(assignees, store.people(tenant_id, assignees), strict=True))
    projects = {pid: store.project(tenant_id, pid) for pid in dict.fromkeys(t.project_id for t in tasks)}
    deps = {d.task_id: d for d in store.tasks(tenant_id, list(dict.fromkeys(d for t in tasks for d in t.depends_on)))}
    for task, effort_points in zip(tasks, points, strict=True):
        open_deps = sum(deps[d].is_open for d in task.depends_on if d in deps)
        seqs.append(sequence(task, now))
        statics.append(static_vector(task, people.get(task.assignee_id), projects[task.project_id], open_deps, now,
                                     float(effort_points)))
    events, mask = pad_sequences(seqs)
    static = np.stack(statics) if statics else np.zeros((0, N_STATIC), np.float32)
    if not seqs:
        events, mask = np.zeros((0, 1, STEP_FEATURES), np.float32), np.zeros((0, 1), np.float32)
    return TaskInputs(events, mask, static)
