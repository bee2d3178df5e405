"""Project aggregate and the `project_features` view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import Field

from mesh.features._schema import ViewSpec
from mesh.features._state import EntityState


class ProjectState(EntityState):
    kind = "project"

    name: str = ""
    owner_id: str = ""
    deadline: datetime | None = None
    member_ids: list[str] = Field(default_factory=list)
    tasks: dict[str, bool] = Field(default_factory=dict)
    """task id -> open (derived from task state)."""
    milestones: dict[str, bool] = Field(default_factory=dict)
    """milestone id -> completed."""


@dataclass(frozen=True)
class ProjectFeatures:
    open_tasks: int = 0
    total_tasks: int = 0
    deadline: datetime | None = None
    members_count: int = 0
    milestones_total: int = 0
    milestones_done: int = 0


def project_row(s: ProjectState) -> ProjectFeatures:
    return ProjectFeatures(
        open_tasks=sum(s.tasks.values()), total_tasks=len(s.tasks), deadline=s.deadline,
        members_count=len(s.member_ids), milestones_total=len(s.milestones), milestones_done=sum(s.milestones.values()),
    )


PROJECT_VIEW: ViewSpec[ProjectState, ProjectFeatures] = ViewSpec(
    "project_features", "project", ProjectState, ProjectFeatures, project_row, "open/total tasks, deadline, members"
)
