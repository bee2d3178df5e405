"""User aggregate and the `user_features` view (skills, workload, throughput, speed, activity)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from mesh.events import TASK_TYPE_SLOTS, task_type_slot
from mesh.features._schema import ViewSpec
from mesh.features._state import EntityState


class Completion(BaseModel):
    task_type: str
    actual_hours: float
    estimate_hours: float


class UserState(EntityState):
    kind = "user"

    role: str = ""
    seniority: int = 0
    timezone: str = ""
    capacity_hours_per_week: float = 0.0
    skills: list[str] = Field(default_factory=list)
    skill_levels: list[int] = Field(default_factory=list)
    open_tasks: dict[str, float] = Field(default_factory=dict)
    """task id -> estimate hours, for open tasks assigned to the user (derived from task state)."""
    completed: dict[str, Completion] = Field(default_factory=dict)
    """task id -> completion, for done tasks the user completed (derived from task state)."""
    last_active: datetime | None = None


@dataclass(frozen=True)
class UserFeatures:
    """Per person, within a tenant."""

    skills: tuple[str, ...] = ()
    skill_levels: tuple[int, ...] = ()
    seniority: int = 0
    role: str = ""
    capacity_hours_per_week: float = 0.0
    open_tasks: int = 0
    est_hours_left: float = 0.0
    completed_count: int = 0
    completed_bug: int = 0
    completed_feature: int = 0
    completed_design: int = 0
    completed_docs: int = 0
    completed_ops: int = 0
    completed_research: int = 0
    completed_data: int = 0
    completed_qa: int = 0
    completed_other: int = 0
    """One completed-count column per slot of `mesh.events.TASK_TYPE_SLOTS` (unknown types count as other)."""
    speed_ratio: float = 0.0
    """Mean actual/estimate hours over completed, estimated tasks (< 1 is faster than estimated); 0 = none."""
    speed_samples: int = 0
    last_active: datetime | None = None


def user_row(s: UserState) -> UserFeatures:
    per_type = dict.fromkeys(TASK_TYPE_SLOTS, 0)
    ratios: list[float] = []
    for c in s.completed.values():
        per_type[task_type_slot(c.task_type)] += 1
        if c.estimate_hours > 0 and c.actual_hours > 0:
            ratios.append(c.actual_hours / c.estimate_hours)
    return UserFeatures(
        skills=tuple(s.skills), skill_levels=tuple(s.skill_levels), seniority=s.seniority, role=s.role,
        capacity_hours_per_week=s.capacity_hours_per_week, open_tasks=len(s.open_tasks),
        est_hours_left=round(sum(s.open_tasks.values(), 0.0), 6), completed_count=len(s.completed),
        completed_bug=per_type["bug"], completed_feature=per_type["feature"], completed_design=per_type["design"],
        completed_docs=per_type["docs"], completed_ops=per_type["ops"], completed_research=per_type["research"],
        completed_data=per_type["data"], completed_qa=per_type["qa"], completed_other=per_type["other"],
        speed_ratio=round(sum(ratios) / len(ratios), 6) if ratios else 0.0,
        speed_samples=len(ratios), last_active=s.last_active,
    )


USER_VIEW: ViewSpec[UserState, UserFeatures] = ViewSpec(
    "user_features", "user", UserState, UserFeatures, user_row, "skills, workload, throughput, speed"
)
