"""The static world: tenants, people and projects, generated once from the seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import _vocab as v
from simulator._clock import DAY, WEEK, monday_of
from simulator._config import SimConfig
from simulator._rng import rng_for

PREF_DIMS = 6
POINTS: tuple[int, ...] = (1, 2, 3, 5, 8, 13)
POINT_PROBS: tuple[float, ...] = (0.14, 0.24, 0.26, 0.2, 0.11, 0.05)


def base_hours(points: int) -> float:
    """Expected hours of a task of this size for an average person of speed 1."""
    return float(3.0 * float(points) ** 0.9)


@dataclass(frozen=True)
class Person:
    user_id: str
    tenant_id: str
    name: str
    role: str
    seniority: int
    timezone: str
    utc_offset_h: int
    capacity_hours: float
    skills: dict[str, int]
    speed: dict[str, float]
    """Work speed per task type (>1 is faster): hours = base / speed."""
    preference: tuple[float, ...]
    """Latent taste vector; views and clicks follow its dot product with the item vector."""
    activity_rate: float
    is_admin: bool
    joined_at: float
    home_ip: str
    device: str

    @property
    def hours_per_day(self) -> float:
        return self.capacity_hours / 5.0


@dataclass(frozen=True)
class Milestone:
    milestone_id: str
    name: str
    due: float
    window_end: float
    """Tasks of this milestone are created before this moment."""


@dataclass(frozen=True)
class Project:
    project_id: str
    tenant_id: str
    name: str
    topic: str
    owner_id: str
    member_ids: tuple[str, ...]
    start: float
    deadline: float
    window_end: float
    """No task is created after this moment."""
    slip_factor: float
    """Hidden multiplier on every task's work (1.0 for projects that do not slip)."""
    scope_factor: float
    """Hidden multiplier on the number of tasks (scope creep)."""
    milestones: tuple[Milestone, ...]
    type_mix: dict[str, float]
    topic_vector: tuple[float, ...]
    tasks_per_week: float

    @property
    def slips(self) -> bool:
        return self.slip_factor > 1.0


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    people: tuple[Person, ...]
    projects: tuple[Project, ...]


@dataclass(frozen=True)
class World:
    config: SimConfig
    t0: float
    horizon: float
    tenants: tuple[Tenant, ...]
    type_vectors: dict[str, tuple[float, ...]]

    @classmethod
    def generate(cls, config: SimConfig) -> World:
        t0 = monday_of(config.start)
        horizon = t0 + config.weeks * WEEK
        rng = rng_for(config.seed, "world")
        type_vectors = {t: _unit(rng.normal(size=PREF_DIMS)) for t in v.TASK_TYPES}
        tenants = tuple(_tenant(config, i, t0, horizon, type_vectors) for i in range(config.tenants))
        return cls(config, t0, horizon, tenants, type_vectors)


def _unit(x: np.ndarray) -> tuple[float, ...]:
    return tuple(float(a) for a in x / (np.linalg.norm(x) + 1e-9))


def _tenant(config: SimConfig, index: int, t0: float, horizon: float,
            type_vectors: dict[str, tuple[float, ...]]) -> Tenant:
    tenant_id = f"tenant-{index:03d}"
    rng = rng_for(config.seed, "tenant", index)
    people = tuple(_person(rng, tenant_id, i, t0, horizon) for i in range(config.users_per_tenant))
    projects = _projects(config, rng, tenant_id, people, t0, horizon)
    return Tenant(tenant_id, f"Workspace {index}", people, projects)


def _person(rng: np.random.Generator, tenant_id: str, i: int, t0: float, horizon: float) -> Person:
    roles = list(v.ROLE_WEIGHTS)
    role = roles[int(rng.choice(len(roles), p=np.array(list(v.ROLE_WEIGHTS.values())) / sum(v.ROLE_WEIGHTS.values())))]
    affinity, role_skills = v.ROLES[role]
    seniority = int(rng.choice(5, p=[0.2, 0.3, 0.28, 0.15, 0.07])) + 1
    n_skills = int(rng.integers(2, min(5, len(role_skills)) + 1))
    skills = {str(s): int(np.clip(rng.integers(1, 4) + (seniority >= 3) + (seniority >= 5), 1, 5))
              for s in rng.choice(role_skills, size=n_skills, replace=False)}
    if rng.random() < 0.3:  # a side skill from another role
        other = v.ROLES[roles[int(rng.integers(len(roles)))]][1]
        skills.setdefault(str(rng.choice(other)), int(rng.integers(1, 3)))
    speed = {t: float(np.exp(rng.normal(0.08 * (seniority - 2.5), 0.25)) * (1.0 + 0.3 * affinity.get(t, 0.0)))
             for t in v.TASK_TYPES}
    tz, offset = v.TIMEZONES[int(rng.integers(len(v.TIMEZONES)))]
    joined = t0 if rng.random() > 0.04 else float(t0 + rng.uniform(0.2, 0.9) * (horizon - t0))
    first = v.FIRST_NAMES[int(rng.integers(len(v.FIRST_NAMES)))]
    name = f"{first} {v.LAST_NAMES[int(rng.integers(len(v.LAST_NAMES)))]}"
    return Person(
        user_id=f"{tenant_id}-u{i:04d}", tenant_id=tenant_id, name=name, role=role, seniority=seniority,
        timezone=tz, utc_offset_h=offset, capacity_hours=float(rng.choice([30.0, 32.0, 36.0, 40.0, 40.0])),
        skills=skills, speed=speed, preference=_unit(rng.normal(size=PREF_DIMS)),
        activity_rate=float(np.exp(rng.normal(0, 0.3))), is_admin=role == "pm" or rng.random() < 0.05,
        joined_at=joined, home_ip=f"10.{int(rng.integers(256))}.{int(rng.integers(256))}.{int(rng.integers(1, 255))}",
        device=str(rng.choice(["laptop", "desktop", "laptop", "mobile"])),
    )


def _projects(config: SimConfig, rng: np.random.Generator, tenant_id: str, people: tuple[Person, ...],
              t0: float, horizon: float) -> tuple[Project, ...]:
    n_slots = max(2, len(people) // 12)
    slots: list[list[Person]] = [[] for _ in range(n_slots)]
    memberships = {p.user_id: 1 + int(rng.binomial(2, 0.3)) for p in people}
    for p in people:
        for s in rng.choice(n_slots, size=min(memberships[p.user_id], n_slots), replace=False):
            slots[int(s)].append(p)
    for members in slots:
        while len(members) < 3:
            extra = people[int(rng.integers(len(people)))]
            if extra not in members:
                members.append(extra)
                memberships[extra.user_id] += 1
    projects: list[Project] = []
    for s, members in enumerate(slots):
        start = t0 + float(rng.uniform(0, 2 * DAY))
        while start < horizon:
            project = _project(config, rng, tenant_id, f"{tenant_id}-p{s:02d}{len(projects):03d}", members,
                               memberships, start)
            projects.append(project)
            start = project.window_end + float(rng.uniform(0, 3 * DAY))
    return tuple(projects)


def _project(config: SimConfig, rng: np.random.Generator, tenant_id: str, project_id: str,
             members: list[Person], memberships: dict[str, int], start: float) -> Project:
    topic = str(rng.choice(list(v.TOPICS)))
    weeks = float(rng.integers(3, 11))
    deadline = start + weeks * WEEK
    window_end = start + 0.75 * weeks * WEEK
    slips = rng.random() < config.slip_fraction
    owner = next((m for m in members if m.role == "pm"), max(members, key=lambda m: m.seniority))
    mix = {t: 0.02 + sum(v.ROLES[m.role][0].get(t, 0.0) for m in members) for t in v.TASK_TYPES}
    total = sum(mix.values())
    mix = {t: w / total for t, w in mix.items()}
    mean_points = sum(base_hours(p) * q for p, q in zip(POINTS, POINT_PROBS, strict=True))
    mean_hours = 1.3 * mean_points * sum(v.TYPE_HOURS[t] * w for t, w in mix.items())
    capacity = sum(m.capacity_hours / memberships[m.user_id] for m in members)
    n_ms = int(rng.integers(2, 5))
    milestones = tuple(
        Milestone(f"{project_id}-m{k}", ("Alpha", "Beta", "GA", "Polish")[k], start + (k + 1) / n_ms * weeks * WEEK,
                  start + (k + 1) / n_ms * 0.75 * weeks * WEEK)
        for k in range(n_ms)
    )
    kind = str(rng.choice(v.PROJECT_KINDS))
    return Project(
        project_id=project_id, tenant_id=tenant_id, name=f"{topic.title()} {kind}", topic=topic, owner_id=owner.user_id,
        member_ids=tuple(m.user_id for m in members), start=start, deadline=deadline, window_end=window_end,
        slip_factor=float(rng.uniform(1.3, 1.8)) if slips else 1.0,
        scope_factor=float(rng.uniform(1.1, 1.3)) if slips else 1.0, milestones=milestones, type_mix=mix,
        topic_vector=_unit(rng.normal(size=PREF_DIMS)),
        tasks_per_week=config.utilization * capacity / mean_hours,
    )
