"""Assignment features: the typed rows the ranker reads, and the (task, candidates) -> matrix builder.

One flat float32 row per (task, candidate) with three blocks: the person (skills, workload, history),
the task (type, priority, skills, estimate, text), and their interaction (skill match, experience with
the type, familiarity with the project, load after taking the task). Both models read the same matrix;
the network slices it into its person and task towers. Skills and text are hashed into fixed buckets,
so the layout does not depend on any tenant's vocabulary.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.events import OTHER_TASK_TYPE, TASK_TYPE_SLOTS, task_type_slot

FEATURE_SCHEMA = "assignment-v1"
"""Bumped whenever the layout changes; stored in every exported model and checked when serving."""
SKILL_BUCKETS = 16
ROLE_BUCKETS = 8
GRID = 1024.0
GRID_MAX = 4096.0
TEXT_DIM = 16
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Matrix = npt.NDArray[np.float32]
_TOKEN = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class PersonFeatures:
    """One person of a tenant, as of ``as_of``."""

    user_id: str
    skills: Mapping[str, int] = field(default_factory=dict)
    """skill -> level 1..5"""
    seniority: int = 0
    role: str = ""
    capacity_hours: float = 40.0
    open_tasks: int = 0
    open_hours: float = 0.0
    """Estimated hours left on the open tasks assigned to the person."""
    done_by_type: Mapping[str, int] = field(default_factory=dict)
    hours_by_type: Mapping[str, float] = field(default_factory=dict)
    """Sum of actual hours logged on completed tasks, per type (with ``done_by_type``: the speed)."""
    assigned_by_project: Mapping[str, int] = field(default_factory=dict)
    assigned_total: int = 0
    projects: frozenset[str] = frozenset()
    """Projects the person is a member of."""
    active: bool = True
    as_of: datetime = EPOCH


@dataclass(frozen=True)
class TaskFeatures:
    """A task to assign, as of ``as_of``."""

    task_id: str
    project_id: str
    task_type: str = OTHER_TASK_TYPE
    priority: int = 0
    required_skills: tuple[str, ...] = ()
    estimate_hours: float = 0.0
    text: str = ""
    as_of: datetime = EPOCH


def _names() -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    person = ("p_seniority", "p_capacity", "p_open_tasks", "p_open_hours", "p_free_hours", "p_done_total",
              *(f"p_skill_{i}" for i in range(SKILL_BUCKETS)), *(f"p_share_{t}" for t in TASK_TYPE_SLOTS),
              *(f"p_role_{i}" for i in range(ROLE_BUCKETS)))
    task = (*(f"t_type_{t}" for t in TASK_TYPE_SLOTS), "t_priority", "t_estimate", "t_n_skills",
            *(f"t_skill_{i}" for i in range(SKILL_BUCKETS)), *(f"t_text_{i}" for i in range(TEXT_DIM)))
    pair = ("x_skill_coverage", "x_skill_level_mean", "x_skill_level_min", "x_type_done", "x_type_share",
            "x_type_hours", "x_project_member", "x_project_recent", "x_project_share", "x_load_after")
    return person, task, pair


PERSON_FEATURES, TASK_FEATURES, PAIR_FEATURES = _names()
FEATURE_NAMES: tuple[str, ...] = (*PERSON_FEATURES, *TASK_FEATURES, *PAIR_FEATURES)
N_FEATURES = len(FEATURE_NAMES)
PERSON_SLICE = slice(0, len(PERSON_FEATURES))
TASK_SLICE = slice(PERSON_SLICE.stop, PERSON_SLICE.stop + len(TASK_FEATURES))
PAIR_SLICE = slice(TASK_SLICE.stop, N_FEATURES)

REASON_GROUPS: dict[str, tuple[str, ...]] = {
    "skills": ("x_skill_coverage", "x_skill_level_mean", "x_skill_level_min",
               *(f"p_skill_{i}" for i in range(SKILL_BUCKETS))),
    "workload": ("p_open_tasks", "p_open_hours", "p_free_hours", "x_load_after"),
    "experience": ("x_type_done", "x_type_share", "p_done_total", *(f"p_share_{t}" for t in TASK_TYPE_SLOTS)),
    "speed": ("x_type_hours",),
    "project": ("x_project_member", "x_project_recent", "x_project_share"),
    "seniority": ("p_seniority", "p_capacity"),
    "role": tuple(f"p_role_{i}" for i in range(ROLE_BUCKETS)),
}
"""Feature groups whose contribution is reported as a reason (person-side features only: the task's
own features do not tell candidates apart)."""


def _bucket(token: str, buckets: int) -> int:
    return zlib.crc32(token.encode()) % buckets


def skill_vector(levels: Mapping[str, float]) -> Matrix:
    """Hashed skill profile: the highest level/5 of the skills in each bucket."""
    out = np.zeros(SKILL_BUCKETS, dtype=np.float32)
    for skill, level in levels.items():
        b = _bucket(skill.lower(), SKILL_BUCKETS)
        out[b] = max(out[b], float(level) / 5.0)
    return out


def text_vector(text: str) -> Matrix:
    """Signed feature hashing of the words, L2-normalised (a cheap text embedding, no model needed)."""
    out = np.zeros(TEXT_DIM, dtype=np.float32)
    for token in _TOKEN.findall(text.lower()):
        h = zlib.crc32(token.encode())
        out[h % TEXT_DIM] += 1.0 if (h >> 16) & 1 else -1.0
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out


def task_block(task: TaskFeatures) -> Matrix:
    one_hot = np.asarray([task_type_slot(task.task_type) == t for t in TASK_TYPE_SLOTS], dtype=np.float32)
    scalars = np.asarray([task.priority / 4.0, math.log1p(max(task.estimate_hours, 0.0)),
                          len(task.required_skills) / 5.0], dtype=np.float32)
    skills = skill_vector(dict.fromkeys(task.required_skills, 5.0))
    return np.concatenate([one_hot, scalars, skills, text_vector(task.text)])


def person_block(p: PersonFeatures) -> Matrix:
    done_total = sum(p.done_by_type.values())
    shares = [p.done_by_type.get(t, 0) / (done_total + 1.0) for t in TASK_TYPE_SLOTS]
    capacity = max(p.capacity_hours, 1.0)
    scalars = [p.seniority / 5.0, capacity / 40.0, math.log1p(p.open_tasks), p.open_hours / 40.0,
               (capacity - p.open_hours) / 40.0, math.log1p(done_total)]
    role = np.zeros(ROLE_BUCKETS, dtype=np.float32)
    if p.role:
        role[_bucket(p.role.lower(), ROLE_BUCKETS)] = 1.0
    return np.concatenate([np.asarray(scalars, dtype=np.float32), skill_vector(p.skills),
                           np.asarray(shares, dtype=np.float32), role])


def pair_block(task: TaskFeatures, p: PersonFeatures) -> Matrix:
    required = [s.lower() for s in task.required_skills]
    known = {s.lower(): lvl for s, lvl in p.skills.items()}
    levels = [known.get(s, 0) / 5.0 for s in required]
    kind = task_type_slot(task.task_type)
    done_total = sum(p.done_by_type.values())
    type_done = p.done_by_type.get(kind, 0)
    mean_hours = p.hours_by_type.get(kind, 0.0) / type_done if type_done else 0.0
    in_project = p.assigned_by_project.get(task.project_id, 0)
    values = [
        float(np.mean([lvl > 0 for lvl in levels])) if levels else 0.0,
        float(np.mean(levels)) if levels else 0.0,
        float(np.min(levels)) if levels else 0.0,
        math.log1p(type_done),
        type_done / (done_total + 1.0),
        math.log1p(mean_hours),
        1.0 if task.project_id in p.projects else 0.0,
        math.log1p(in_project),
        in_project / (p.assigned_total + 1.0),
        (p.open_hours + max(task.estimate_hours, 0.0)) / max(p.capacity_hours, 1.0),
    ]
    return np.asarray(values, dtype=np.float32)


def feature_matrix(task: TaskFeatures, people: Sequence[PersonFeatures] | PeopleArrays,
                   rows: npt.NDArray[np.intp] | None = None) -> Matrix:
    """One row per candidate, columns in :data:`FEATURE_NAMES` order, on a grid of 1/1024.

    ``people`` may be a :class:`PeopleArrays` built once for many tasks; ``rows`` then picks the candidates
    of this task in it (all by default). Array expressions over all candidates at once; the per-row
    :func:`person_block`/:func:`pair_block` are the readable definition it equals (tested).

    The grid keeps the trees exact in ONNX: LightGBM splits half-way between two values in float64, and
    ONNX stores thresholds in float32; on the grid every half-way point is a float32 too, so no row can
    fall on the other side of a rounded threshold.
    """
    arrays = people if isinstance(people, PeopleArrays) else PeopleArrays.of(people)
    idx = np.arange(len(arrays)) if rows is None else np.asarray(rows, dtype=np.intp)
    if not len(idx):
        return np.zeros((0, N_FEATURES), dtype=np.float32)
    t = np.broadcast_to(task_block(task), (len(idx), TASK_SLICE.stop - TASK_SLICE.start))
    x = np.concatenate([arrays.person[idx], t, pair_columns(task, arrays, idx).astype(np.float32)], axis=1)
    return on_grid(x)


def on_grid(x: Matrix) -> Matrix:
    """Values rounded to the 1/1024 grid (see :func:`feature_matrix`), float32."""
    grid: Matrix = (np.round(np.clip(x, -GRID_MAX, GRID_MAX) * GRID) / GRID).astype(np.float32)
    return grid


FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class PeopleArrays:
    """Many candidates' rows as arrays, built once per read: the person block of every candidate and the
    raw values the pair features need (skill levels, per-type history, per-project counts), so the matrix
    for any task is a few array expressions, not a loop over candidates."""

    people: tuple[PersonFeatures, ...]
    person: Matrix
    """(n, person features) float32, before the grid"""
    skill_levels: FloatArray
    """(n, skills): level / 5 per lower-cased skill name (:attr:`skill_index`)"""
    skill_index: Mapping[str, int]
    done: FloatArray
    """(n, task type slots) completed tasks per type"""
    hours: FloatArray
    """(n, task type slots) actual hours on them"""
    done_total: FloatArray
    assigned: FloatArray
    """(n, projects) tasks assigned per project (:attr:`project_index`)"""
    member: FloatArray
    """(n, projects) 1.0 for a project member"""
    project_index: Mapping[str, int]
    assigned_total: FloatArray
    open_hours: FloatArray
    capacity: FloatArray
    """max(capacity_hours, 1)"""

    def __len__(self) -> int:
        return len(self.people)

    @classmethod
    def of(cls, people: Sequence[PersonFeatures]) -> PeopleArrays:
        people = tuple(people)
        n = len(people)
        # flat (row, key, value) triples of the mappings: the only pass over candidates, no arithmetic in it
        skills = [(i, s.lower(), lvl) for i, p in enumerate(people)
                  for s, lvl in {k.lower(): v for k, v in p.skills.items()}.items()]
        raw_skills = [(i, _skill_bucket(s.lower()), float(lvl) / 5.0) for i, p in enumerate(people)
                      for s, lvl in p.skills.items()]
        skill_index = {s: j for j, s in enumerate(dict.fromkeys(s for _, s, _ in skills))}
        levels = np.zeros((n, len(skill_index)))
        if skills:
            levels[[i for i, _, _ in skills], [skill_index[s] for _, s, _ in skills]] = \
                np.asarray([lvl for _, _, lvl in skills], dtype=np.float64) / 5.0
        buckets = np.zeros((n, SKILL_BUCKETS), dtype=np.float32)
        if raw_skills:
            np.maximum.at(buckets, ([i for i, _, _ in raw_skills], [b for _, b, _ in raw_skills]),
                          np.asarray([v for _, _, v in raw_skills], dtype=np.float32))
        slot = {t: j for j, t in enumerate(TASK_TYPE_SLOTS)}
        done, hours = np.zeros((n, len(slot))), np.zeros((n, len(slot)))
        _scatter(done, [(i, slot[t], c) for i, p in enumerate(people) for t, c in p.done_by_type.items() if t in slot])
        _scatter(hours, [(i, slot[t], h) for i, p in enumerate(people) for t, h in p.hours_by_type.items()
                         if t in slot])
        projects = dict.fromkeys(q for p in people for q in (*p.assigned_by_project, *p.projects))
        project_index = {q: j for j, q in enumerate(projects)}
        assigned, member = np.zeros((n, len(project_index))), np.zeros((n, len(project_index)))
        _scatter(assigned, [(i, project_index[q], c) for i, p in enumerate(people)
                            for q, c in p.assigned_by_project.items()])
        _scatter(member, [(i, project_index[q], 1.0) for i, p in enumerate(people) for q in p.projects])
        scalars = np.asarray([(p.seniority, p.capacity_hours, p.open_tasks, p.open_hours, p.assigned_total,
                               sum(p.done_by_type.values())) for p in people], dtype=np.float64).reshape(n, 6)
        seniority, capacity_raw, open_tasks, open_hours, assigned_total, done_total = scalars.T
        capacity = np.maximum(capacity_raw, 1.0)
        role = np.zeros((n, ROLE_BUCKETS), dtype=np.float32)
        with_role = [(i, _role_bucket(p.role.lower())) for i, p in enumerate(people) if p.role]
        if with_role:
            role[[i for i, _ in with_role], [b for _, b in with_role]] = 1.0
        person_scalars = np.stack([seniority / 5.0, capacity / 40.0, np.log1p(open_tasks), open_hours / 40.0,
                                   (capacity - open_hours) / 40.0, np.log1p(done_total)], axis=1)
        shares = done / (done_total[:, None] + 1.0)
        person = np.concatenate([person_scalars.astype(np.float32), buckets, shares.astype(np.float32), role],
                                axis=1)
        return cls(people, person, levels, skill_index, done, hours, done_total, assigned, member, project_index,
                   assigned_total, open_hours, capacity)


def pair_columns(task: TaskFeatures, people: PeopleArrays, rows: npt.NDArray[np.intp] | None = None) -> FloatArray:
    """The interaction block (:data:`PAIR_FEATURES`) of ``task`` with the candidates ``rows`` (all by
    default), float64 before the grid; equals :func:`pair_block` row by row."""
    idx = np.arange(len(people)) if rows is None else rows
    n = len(idx)
    required = [people.skill_index.get(s.lower(), -1) for s in task.required_skills]
    if required:
        # a column of zeros stands for a required skill nobody among the candidates has
        known = np.concatenate([people.skill_levels, np.zeros((len(people), 1))], axis=1)
        levels = known[np.ix_(idx, np.asarray(required))]
        coverage, mean, low = (levels > 0).mean(axis=1), levels.mean(axis=1), levels.min(axis=1)
    else:
        coverage = mean = low = np.zeros(n)
    kind = TASK_TYPE_SLOTS.index(task_type_slot(task.task_type))
    type_done, type_hours = people.done[idx, kind], people.hours[idx, kind]
    mean_hours = np.divide(type_hours, type_done, out=np.zeros(n), where=type_done > 0)
    p = people.project_index.get(task.project_id)
    in_project = people.assigned[idx, p] if p is not None else np.zeros(n)
    member = people.member[idx, p] if p is not None else np.zeros(n)
    return np.stack([
        coverage, mean, low, np.log1p(type_done), type_done / (people.done_total[idx] + 1.0), np.log1p(mean_hours),
        member, np.log1p(in_project), in_project / (people.assigned_total[idx] + 1.0),
        (people.open_hours[idx] + max(task.estimate_hours, 0.0)) / people.capacity[idx],
    ], axis=1)


def _scatter(out: FloatArray, triples: list[tuple[int, int, float]]) -> None:
    if triples:
        out[[r for r, _, _ in triples], [c for _, c, _ in triples]] = [v for _, _, v in triples]


@lru_cache(maxsize=65536)
def _skill_bucket(name: str) -> int:
    return _bucket(name, SKILL_BUCKETS)


@lru_cache(maxsize=4096)
def _role_bucket(name: str) -> int:
    return _bucket(name, ROLE_BUCKETS)


def column(name: str) -> int:
    return FEATURE_NAMES.index(name)


def describe_reason(group: str, task: TaskFeatures, p: PersonFeatures) -> str:
    """A human sentence for a reason group, from the raw values."""
    kind = task_type_slot(task.task_type)
    if group == "skills":
        have = [s for s in task.required_skills if s.lower() in {k.lower() for k in p.skills}]
        listed = f" ({', '.join(have)})" if have else ""
        return f"has {len(have)}/{len(task.required_skills)} required skills{listed}"
    if group == "workload":
        return f"{p.open_tasks} open tasks, {p.open_hours:.0f}h of {p.capacity_hours:.0f}h/week planned"
    if group == "experience":
        return f"completed {p.done_by_type.get(kind, 0)} {kind} tasks"
    if group == "speed":
        done = p.done_by_type.get(kind, 0)
        return f"{p.hours_by_type.get(kind, 0.0) / done:.1f}h per {kind} task" if done else f"no {kind} history"
    if group == "project":
        member = "member of the project" if task.project_id in p.projects else "not a project member"
        return f"{member}, {p.assigned_by_project.get(task.project_id, 0)} tasks in it"
    if group == "role":
        return f"role {p.role or 'unknown'}"
    return f"seniority {p.seniority}"


def metadata(extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What an exported model must carry so that serving can check it reads the same layout."""
    out = {"feature_schema": FEATURE_SCHEMA, "feature_names": ",".join(FEATURE_NAMES)}
    out.update({k: str(v) for k, v in (extra or {}).items()})
    return out
