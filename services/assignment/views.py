"""The assignment feature views: one row per person and one per task, keyed ``tenant:id``, derived from the
service's own aggregates (:mod:`services.assignment.state`) by the mesh machinery (``ViewSpec.derive``).

The service reads its rows from the committed state itself (``StateStore``), not from a pushed copy: a
read never sees a row older than the state it ranks with. The views are declared so that the same rows
can be registered and materialised like any other feature view. The columns are flat (maps become
parallel arrays or one column per task type) because Feast rows hold scalars and string/int arrays only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesh.events import OTHER_TASK_TYPE, TASK_TYPE_SLOTS
from mesh.features import FeatureRecord, ViewSpec, entity_key
from services.assignment.features import PersonFeatures, TaskFeatures
from services.assignment.state import PersonState, TaskState, person_features, task_features


@dataclass(frozen=True)
class PersonRow:
    """:class:`PersonFeatures` as Feast columns (the row's event timestamp is ``as_of``)."""

    skills: tuple[str, ...] = ()
    skill_levels: tuple[int, ...] = ()
    seniority: int = 0
    role: str = ""
    capacity_hours: float = 40.0
    open_tasks: int = 0
    open_hours: float = 0.0
    done_bug: int = 0
    done_feature: int = 0
    done_design: int = 0
    done_docs: int = 0
    done_ops: int = 0
    done_research: int = 0
    done_data: int = 0
    done_qa: int = 0
    done_other: int = 0
    hours_bug: float = 0.0
    hours_feature: float = 0.0
    hours_design: float = 0.0
    hours_docs: float = 0.0
    hours_ops: float = 0.0
    hours_research: float = 0.0
    hours_data: float = 0.0
    hours_qa: float = 0.0
    hours_other: float = 0.0
    assigned_projects: tuple[str, ...] = ()
    assigned_counts: tuple[int, ...] = ()
    assigned_total: int = 0
    projects: tuple[str, ...] = ()
    active: bool = False


@dataclass(frozen=True)
class TaskRow:
    """:class:`TaskFeatures` as Feast columns (the row's event timestamp is ``as_of``)."""

    task_id: str = ""
    project_id: str = ""
    task_type: str = OTHER_TASK_TYPE
    priority: int = 0
    required_skills: tuple[str, ...] = ()
    estimate_hours: float = 0.0
    text: str = ""


def _person_row(s: PersonState) -> PersonRow:
    return person_record(s.tenant_id, person_features(s)).features


def _task_row(s: TaskState) -> TaskRow:
    return task_record(s.tenant_id, task_features(s)).features


PERSON_VIEW: ViewSpec[PersonState, PersonRow] = ViewSpec(
    "assignment_person", "user", PersonState, PersonRow, _person_row,
    "assignment: skills, workload, throughput and speed per task type, project history, availability")
TASK_VIEW: ViewSpec[TaskState, TaskRow] = ViewSpec(
    "assignment_task", "task", TaskState, TaskRow, _task_row,
    "assignment: type, priority, required skills, estimate, text of a task")
ASSIGNMENT_VIEWS: tuple[ViewSpec[Any, Any], ...] = (PERSON_VIEW, TASK_VIEW)


def person_record(tenant_id: str, p: PersonFeatures) -> FeatureRecord[PersonRow]:
    per_type: dict[str, Any] = {f"done_{t}": p.done_by_type.get(t, 0) for t in TASK_TYPE_SLOTS}
    per_type.update({f"hours_{t}": p.hours_by_type.get(t, 0.0) for t in TASK_TYPE_SLOTS})
    row = PersonRow(
        skills=tuple(p.skills), skill_levels=tuple(p.skills.values()), seniority=p.seniority, role=p.role,
        capacity_hours=p.capacity_hours, open_tasks=p.open_tasks, open_hours=p.open_hours,
        assigned_projects=tuple(p.assigned_by_project), assigned_counts=tuple(p.assigned_by_project.values()),
        assigned_total=p.assigned_total, projects=tuple(sorted(p.projects)), active=p.active, **per_type)
    return FeatureRecord(entity_key(tenant_id, p.user_id), p.as_of, row)


def person_of(user_id: str, record: FeatureRecord[PersonRow]) -> PersonFeatures:
    """The row back as the ranker's type; ``as_of`` is the row's event timestamp in the online store."""
    r = record.features
    done = {t: n for t in TASK_TYPE_SLOTS if (n := int(getattr(r, f"done_{t}")))}
    hours = {t: h for t in TASK_TYPE_SLOTS if (h := float(getattr(r, f"hours_{t}")))}
    return PersonFeatures(
        user_id=user_id, skills=dict(zip(r.skills, r.skill_levels, strict=True)), seniority=r.seniority,
        role=r.role, capacity_hours=r.capacity_hours, open_tasks=r.open_tasks, open_hours=r.open_hours,
        done_by_type=done, hours_by_type=hours,
        assigned_by_project=dict(zip(r.assigned_projects, r.assigned_counts, strict=True)),
        assigned_total=r.assigned_total, projects=frozenset(r.projects), active=r.active, as_of=record.event_timestamp)


def task_record(tenant_id: str, t: TaskFeatures) -> FeatureRecord[TaskRow]:
    row = TaskRow(task_id=t.task_id, project_id=t.project_id, task_type=t.task_type, priority=t.priority,
                  required_skills=t.required_skills, estimate_hours=t.estimate_hours, text=t.text)
    return FeatureRecord(entity_key(tenant_id, t.task_id), t.as_of, row)


def task_of(record: FeatureRecord[TaskRow]) -> TaskFeatures:
    """The row back as the ranker's type; ``as_of`` is the row's event timestamp in the online store."""
    r = record.features
    return TaskFeatures(task_id=r.task_id, project_id=r.project_id, task_type=r.task_type, priority=r.priority,
                        required_skills=r.required_skills, estimate_hours=r.estimate_hours, text=r.text,
                        as_of=record.event_timestamp)

