"""Ground truth written beside the event stream: what really caused what the events show.

One JSON-lines file per kind under ``<out>/truth/``; :func:`load_truth` reads them back into the same
typed, frozen records. Times are timezone-aware UTC datetimes (ISO 8601 in the files).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar


@dataclass(frozen=True)
class PersonTruth:
    tenant_id: str
    user_id: str
    role: str
    seniority: int
    timezone: str
    capacity_hours: float
    skills: dict[str, int]
    speed: dict[str, float]
    """Work speed per task type: true hours = base hours of the size / speed (times other factors)."""
    preference: tuple[float, ...]
    """Latent taste vector: views and clicks follow its dot product with a task's ``item_vector``."""
    joined_at: datetime


@dataclass(frozen=True)
class Candidate:
    user_id: str
    utility: float
    """True utility without noise: the choice is argmax(utility + Gumbel noise of scale 0.7)."""
    skill_match: float
    load_ratio: float
    history: float
    role_fit: float


@dataclass(frozen=True)
class AssignmentTruth:
    tenant_id: str
    task_id: str
    project_id: str
    assigned_at: datetime
    chosen: str
    best: str
    """The candidate with the highest true utility (also what a simulated suggestion proposed)."""
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class TaskTruth:
    tenant_id: str
    task_id: str
    project_id: str
    milestone_id: str
    task_type: str
    points: int
    """Latent complexity (story points)."""
    priority: int
    required_skills: tuple[str, ...]
    created_at: datetime
    assignee_id: str
    skill_match: float
    assignee_speed: float
    true_hours: float
    """Hours of work the task really took (logged as ``task_completed.actual_hours``)."""
    blocked_hours: float
    started_at: datetime
    done_at: datetime
    observed: bool
    """False when done after the horizon (its task_completed event was not emitted)."""
    duplicate_of: str
    """Task id this one paraphrases, or ""."""
    item_vector: tuple[float, ...]


@dataclass(frozen=True)
class CommentTruth:
    tenant_id: str
    comment_id: str
    task_id: str
    sentiment: str
    """negative, neutral or positive."""
    score: float
    at: datetime


@dataclass(frozen=True)
class AnomalyTruth:
    tenant_id: str
    user_id: str
    kind: str
    """mass_export, bulk_delete_spree, off_hours_access, permission_escalation or api_scraping."""
    start: datetime
    end: datetime
    n_events: int


@dataclass(frozen=True)
class WorkflowStep:
    action: str
    detail: str
    """UserActivity.resource is ``"<task id>:<detail>"``."""


@dataclass(frozen=True)
class WorkflowTruth:
    tenant_id: str
    workflow_id: str
    user_id: str
    trigger_type: str
    """Envelope type of the trigger event (task_status_changed, task_created or task_assigned)."""
    trigger_project_ids: tuple[str, ...]
    """The trigger counts only in these projects (those the person is a member of)."""
    trigger_condition: str
    """e.g. ``to_status=TASK_STATUS_DONE`` or ``task_type=bug``."""
    steps: tuple[WorkflowStep, ...]
    triggers: int
    performed: int
    task_ids: tuple[str, ...]
    """Tasks whose trigger was followed by the steps (in the emitted horizon)."""


@dataclass(frozen=True)
class ActionItem:
    owner_id: str
    owner_name: str
    text: str
    due: str


@dataclass(frozen=True)
class MeetingTruth:
    tenant_id: str
    meeting_id: str
    project_id: str
    at: datetime
    title: str
    action_items: tuple[ActionItem, ...]


@dataclass(frozen=True)
class MilestoneTruth:
    milestone_id: str
    due: datetime
    completed_at: datetime | None


@dataclass(frozen=True)
class ProjectTruth:
    tenant_id: str
    project_id: str
    start: datetime
    deadline: datetime
    slip_factor: float
    scope_factor: float
    slips: bool
    n_tasks: int
    """Tasks created (within the horizon)."""
    completed_at: datetime | None
    """When the last task was done, when every task was created within the horizon."""
    revised_deadline: datetime | None
    milestones: tuple[MilestoneTruth, ...]


@dataclass(frozen=True)
class Truth:
    people: tuple[PersonTruth, ...]
    projects: tuple[ProjectTruth, ...]
    tasks: tuple[TaskTruth, ...]
    assignments: tuple[AssignmentTruth, ...]
    comments: tuple[CommentTruth, ...]
    anomalies: tuple[AnomalyTruth, ...]
    workflows: tuple[WorkflowTruth, ...]
    meetings: tuple[MeetingTruth, ...]

    def write(self, directory: Path | str) -> None:
        """One ``<field>.jsonl`` per kind of record."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for f in dataclasses.fields(self):
            with (out / f"{f.name}.jsonl").open("w", encoding="utf-8") as fh:
                for record in getattr(self, f.name):
                    fh.write(json.dumps(_plain(record), ensure_ascii=False, sort_keys=True) + "\n")


def load_truth(path: Path | str) -> Truth:
    """Read a truth folder (``<out>/truth`` or ``<out>``) back into typed records."""
    directory = Path(path)
    if not (directory / "people.jsonl").exists() and (directory / "truth").is_dir():
        directory = directory / "truth"
    hints = typing.get_type_hints(Truth)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(Truth):
        record_type = typing.get_args(hints[f.name])[0]
        lines = (directory / f"{f.name}.jsonl").read_text(encoding="utf-8").splitlines()
        values[f.name] = tuple(_decode(record_type, json.loads(line)) for line in lines if line)
    return Truth(**values)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    return value


T = TypeVar("T")


def _decode(tp: Any, raw: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        if raw is None:
            return None
        return _decode(next(a for a in typing.get_args(tp) if a is not type(None)), raw)
    if origin is tuple:
        return tuple(_decode(typing.get_args(tp)[0], x) for x in raw)
    if origin is dict:
        return {k: _decode(typing.get_args(tp)[1], x) for k, x in raw.items()}
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        ctor: Any = tp
        return ctor(**{f.name: _decode(hints[f.name], raw[f.name]) for f in dataclasses.fields(tp)})
    if tp is datetime:
        return datetime.fromisoformat(raw)
    if tp is float:
        return float(raw)
    return raw
