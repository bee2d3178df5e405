"""A small deterministic Sunday.com event stream for feature tests (independent of simulator/)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.events import Envelope, new_envelope

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TYPES = ("bug", "feature", "design", "docs", "ops", "research", "spike")
SKILLS = ("python", "go", "react", "sql", "k8s", "figma")


def ts(dt: datetime) -> Timestamp:
    out = Timestamp()
    out.FromDatetime(dt)
    return out


def env(tenant: str, payload: object, at: datetime, event_id: str | None = None) -> Envelope:
    return new_envelope(tenant, payload, producer="tests", occurred_at=at, event_id=event_id)  # type: ignore[arg-type]


def stream(seed: int = 1, tenants: int = 2, users: int = 6, tasks: int = 30) -> list[Envelope]:
    """Users join, projects start, tasks are created, assigned, moved, commented and completed; in time order."""
    rng = random.Random(seed)
    out: list[tuple[datetime, Envelope]] = []
    for ti in range(tenants):
        tenant = f"tenant-{ti}"
        people = [f"user-{i}" for i in range(users)]
        for i, u in enumerate(people):
            skills = [c.Skill(name=s, level=rng.randint(1, 5)) for s in rng.sample(SKILLS, 2)]
            out.append((T0 + timedelta(minutes=i), env(tenant, e.UserJoined(
                user_id=u, role="engineer", seniority=rng.randint(1, 5), timezone="UTC",
                capacity_hours_per_week=rng.choice([30.0, 36.0, 40.0]), skills=skills), T0 + timedelta(minutes=i))))
        for p in range(2):
            at = T0 + timedelta(hours=1, minutes=p)
            out.append((at, env(tenant, e.ProjectCreated(
                project_id=f"proj-{p}", name=f"P{p}", owner_id=people[0], member_ids=people[: 3 + p],
                deadline=ts(T0 + timedelta(days=20))), at)))
        for k in range(tasks):
            out += _task_life(rng, tenant, f"task-{k}", f"proj-{k % 2}", people, T0 + timedelta(hours=2 + k))
    out.sort(key=lambda pair: pair[0])
    return [ev for _, ev in out]


def _task_life(rng: random.Random, tenant: str, task: str, project: str, people: list[str],
               start: datetime) -> list[tuple[datetime, Envelope]]:
    est = float(rng.choice([0, 2, 4, 8, 16]))
    created = e.TaskCreated(task_id=task, project_id=project, task_type=rng.choice(TYPES),
                            priority=rng.randint(1, 4), required_skills=rng.sample(SKILLS, 2),
                            estimate_hours=est, created_by=rng.choice(people))
    who = rng.choice(people)
    steps: list[object] = [created, e.TaskAssigned(task_id=task, project_id=project, assignee_id=who,
                                                   assigned_by=people[0])]
    steps.append(e.TaskStatusChanged(task_id=task, project_id=project, from_status=e.TASK_STATUS_TODO,
                                     to_status=e.TASK_STATUS_IN_PROGRESS, actor_id=who))
    steps += [e.TaskCommented(task_id=task, project_id=project, comment_id=f"{task}-c{i}",
                              author_id=rng.choice(people), text="ok") for i in range(rng.randint(0, 3))]
    if rng.random() < 0.3:
        steps.append(e.TaskUpdated(task_id=task, project_id=project, priority=e.PRIORITY_CRITICAL,
                                   estimate_hours=est + 2))
    if rng.random() < 0.3:
        who = rng.choice(people)
        steps.append(e.TaskAssigned(task_id=task, project_id=project, assignee_id=who, assigned_by=people[0]))
    if rng.random() < 0.7:
        steps.append(e.TaskCompleted(task_id=task, project_id=project, assignee_id=who,
                                     actual_hours=round(rng.uniform(1, 20), 2)))
    steps.append(e.UserActivity(user_id=rng.choice(people), action="login"))
    out, at = [], start
    for payload in steps:
        at += timedelta(minutes=rng.randint(1, 240))
        out.append((at, env(tenant, payload, at)))
    return out
