"""A small seeded Sunday.com world for assignment tests: people with skills join, projects with members
start, tasks are created and assigned by a hidden noisy utility (skills, workload, project history,
type affinity), then completed. Emits time-ordered envelopes."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.events import Envelope, new_envelope

T0 = datetime(2026, 1, 5, tzinfo=UTC)
TYPES = {"bug": ("python", "go", "sql", "api"), "feature": ("python", "react", "typescript", "api"),
         "design": ("figma", "ux", "ui"), "docs": ("writing", "editing"), "ops": ("kubernetes", "aws", "terraform")}
WORDS = {"bug": "fix crash error login timeout", "feature": "add export page filter button",
         "design": "mockup layout colors onboarding", "docs": "guide readme tutorial api reference",
         "ops": "deploy cluster alerting migrate terraform"}


@dataclass
class _Person:
    user_id: str
    skills: dict[str, int]
    affinity: dict[str, float]
    capacity: float
    open_hours: float = 0.0
    projects: dict[str, int] = field(default_factory=dict)


def world_events(tenants: int = 2, people: int = 14, weeks: int = 6, tasks_per_day: int = 6,
                 seed: int = 0) -> list[Envelope]:
    rng = np.random.default_rng(seed)
    out: list[tuple[float, int, Envelope]] = []
    n = 0

    def emit(at: datetime, tenant: str, payload: object) -> None:
        nonlocal n
        n += 1
        heapq.heappush(out, (at.timestamp(), n, new_envelope(tenant, payload, producer="test-world",  # type: ignore[arg-type]
                                                              occurred_at=at)))

    for ti in range(tenants):
        tenant = f"tenant-{ti}"
        crew = []
        for i in range(people):
            main = list(TYPES)[i % len(TYPES)]
            pool = list(TYPES[main]) + [str(rng.choice([s for t in TYPES.values() for s in t]))]
            skills = {s: int(rng.integers(1, 6)) for s in pool[: int(rng.integers(2, len(pool) + 1))]}
            p = _Person(f"{tenant}-u{i}", skills, {t: 1.0 if t == main else 0.1 for t in TYPES},
                        float(rng.choice([30.0, 40.0])))
            crew.append(p)
            emit(T0, tenant, e.UserJoined(user_id=p.user_id, seniority=int(rng.integers(1, 6)),
                                          capacity_hours_per_week=p.capacity,
                                          skills=[c.Skill(name=k, level=v) for k, v in skills.items()]))
        projects = [f"{tenant}-p{j}" for j in range(3)]
        members = {pr: [p for p in crew if rng.random() < 0.6] or crew[:3] for pr in projects}
        for pr in projects:
            emit(T0 + timedelta(minutes=1), tenant, e.ProjectCreated(project_id=pr, name=pr,
                                                                       member_ids=[m.user_id for m in members[pr]]))
        done_queue: list[tuple[float, int, _Person, float]] = []
        for day in range(weeks * 7):
            for k in range(tasks_per_day):
                at = T0 + timedelta(days=day, hours=9, minutes=int(rng.integers(0, 480)))
                while done_queue and done_queue[0][0] <= at.timestamp():
                    _, _, person, hours = heapq.heappop(done_queue)
                    person.open_hours = max(0.0, person.open_hours - hours)
                kind = str(rng.choice(list(TYPES)))
                required = [str(s) for s in rng.choice(TYPES[kind], size=2, replace=False)]
                project = str(rng.choice(projects))
                task_id, hours = f"{tenant}-t{day}-{k}", float(rng.integers(2, 16))
                emit(at, tenant, e.TaskCreated(task_id=task_id, project_id=project, title=f"{kind} {WORDS[kind]}",
                                               task_type=kind, priority=int(rng.integers(1, 5)),
                                               required_skills=required, estimate_hours=hours))
                cands = members[project]
                util = np.array([3.0 * sum(p.skills.get(s, 0) for s in required) / 10 - 1.5 * p.open_hours / p.capacity
                                 + 0.6 * min(1.0, np.log1p(p.projects.get(project, 0)) / np.log(10)) + 1.2 * p.affinity[kind]
                                 for p in cands])
                chosen = cands[int(np.argmax(util + rng.gumbel(0, 0.7, size=len(cands))))]
                chosen.open_hours += hours
                chosen.projects[project] = chosen.projects.get(project, 0) + 1
                assigned_at = at + timedelta(minutes=int(rng.integers(5, 120)))
                emit(assigned_at, tenant, e.TaskAssigned(task_id=task_id, project_id=project,
                                                         assignee_id=chosen.user_id))
                done_at = assigned_at + timedelta(hours=hours * 24 / 8 * float(rng.uniform(0.5, 1.5)))
                heapq.heappush(done_queue, (done_at.timestamp(), n, chosen, hours))
                emit(done_at, tenant, e.TaskCompleted(task_id=task_id, project_id=project, assignee_id=chosen.user_id,
                                                      actual_hours=hours * float(rng.uniform(0.6, 1.4))))
    horizon = (T0 + timedelta(weeks=weeks)).timestamp()
    return [env for at, _, env in sorted(out) if at < horizon]
