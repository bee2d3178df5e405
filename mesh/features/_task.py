"""Task aggregate and the `task_features` view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import Field

from mesh.events import STATUS_DONE as STATUS_DONE  # re-exported: the reducers import it from here
from mesh.features._schema import ViewSpec
from mesh.features._state import EntityState


class TaskState(EntityState):
    kind = "task"

    project_id: str = ""
    milestone_id: str = ""
    task_type: str = ""
    priority: int = 0
    required_skills: list[str] = Field(default_factory=list)
    estimate_hours: float = 0.0
    status: int = 0
    assignee_id: str = ""
    completed_by: str = ""
    actual_hours: float = 0.0
    created_at: datetime | None = None
    due_at: datetime | None = None
    n_status_changes: int = 0
    n_comments: int = 0
    n_views: int = 0

    @property
    def is_open(self) -> bool:
        return self.status != STATUS_DONE


@dataclass(frozen=True)
class TaskFeatures:
    """Per task: what it is, where it stands, how much it moved."""

    task_type: str = ""
    priority: int = 0
    required_skills: tuple[str, ...] = ()
    estimate_hours: float = 0.0
    status: int = 0
    """sunday.ml.v1.TaskStatus value."""
    assignee_id: str = ""
    project_id: str = ""
    milestone_id: str = ""
    created_at: datetime | None = None
    due_at: datetime | None = None
    n_status_changes: int = 0
    n_comments: int = 0
    n_views: int = 0
    actual_hours: float = 0.0


def task_row(s: TaskState) -> TaskFeatures:
    return TaskFeatures(
        task_type=s.task_type, priority=s.priority, required_skills=tuple(s.required_skills),
        estimate_hours=s.estimate_hours, status=s.status, assignee_id=s.assignee_id, project_id=s.project_id,
        milestone_id=s.milestone_id, created_at=s.created_at, due_at=s.due_at,
        n_status_changes=s.n_status_changes, n_comments=s.n_comments, n_views=s.n_views,
        actual_hours=s.actual_hours,
    )


TASK_VIEW: ViewSpec[TaskState, TaskFeatures] = ViewSpec(
    "task_features", "task", TaskState, TaskFeatures, task_row, "type, priority, skills, estimate, status, activity"
)
