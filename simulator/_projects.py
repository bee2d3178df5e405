"""Projects and milestones: creation, deadline slips, milestone completion, and their truth."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp
from sunday.ml.v1 import events_pb2 as e

from simulator._clock import WEEK, to_datetime
from simulator._context import TaskState, TenantContext
from simulator._truth import MilestoneTruth, ProjectTruth
from simulator._world import Project


def _ts(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromSeconds(int(t))
    return ts


class ProjectFlow:
    """Emits project and milestone events; milestones complete when their last task is done."""

    def __init__(self, ctx: TenantContext, tasks_by_milestone: dict[str, list[TaskState]]) -> None:
        self.ctx = ctx
        self._tasks_by_milestone = tasks_by_milestone
        self._milestone_done: dict[str, float] = {}
        self._revised: dict[str, float] = {}

    def week(self, week_start: float) -> None:
        """Start the projects that start this week; close milestones whose tasks are all created."""
        week_end = week_start + WEEK
        for project in self.ctx.tenant.projects:
            if week_start <= project.start < week_end:
                self._start(project)
        for project in self.ctx.tenant.projects:
            for m in project.milestones:
                if m.milestone_id not in self._milestone_done and m.window_end <= week_end:
                    self._close(project, m.milestone_id, m.window_end)

    def _start(self, project: Project) -> None:
        ctx = self.ctx
        ctx.emit(project.start, e.ProjectCreated(project_id=project.project_id, name=project.name,
                                                 owner_id=project.owner_id, deadline=_ts(project.deadline),
                                                 member_ids=list(project.member_ids)))
        for m in project.milestones:
            ctx.emit(project.start + 1.0, e.MilestoneCreated(milestone_id=m.milestone_id, project_id=project.project_id,
                                                             name=m.name, due_at=_ts(m.due)))
        if project.slips:  # the owner notices part-way through and moves the deadline
            noticed = project.start + 0.6 * (project.deadline - project.start)
            revised = project.deadline + 0.8 * (project.slip_factor - 1.0) * (project.deadline - project.start)
            self._revised[project.project_id] = revised
            ctx.emit(noticed, e.ProjectUpdated(project_id=project.project_id, deadline=_ts(revised)))

    def _close(self, project: Project, milestone_id: str, window_end: float) -> None:
        tasks = self._tasks_by_milestone.get(milestone_id, [])
        done = max((t.done for t in tasks), default=window_end)
        done = max(done, window_end)
        self._milestone_done[milestone_id] = done
        self.ctx.emit(done, e.MilestoneCompleted(milestone_id=milestone_id, project_id=project.project_id))

    def truth(self) -> list[ProjectTruth]:
        out = []
        horizon = self.ctx.horizon
        for p in self.ctx.tenant.projects:
            if p.start >= horizon:
                continue
            tasks = [t for m in p.milestones for t in self._tasks_by_milestone.get(m.milestone_id, [])]
            finished = p.window_end <= horizon and bool(tasks)
            milestones = tuple(
                MilestoneTruth(m.milestone_id, to_datetime(m.due),
                               to_datetime(self._milestone_done[m.milestone_id])
                               if m.milestone_id in self._milestone_done else None)
                for m in p.milestones)
            revised = self._revised.get(p.project_id)
            out.append(ProjectTruth(
                self.ctx.tenant.tenant_id, p.project_id, to_datetime(p.start), to_datetime(p.deadline),
                p.slip_factor, p.scope_factor, p.slips, len(tasks),
                to_datetime(max(t.done for t in tasks)) if finished else None,
                to_datetime(revised) if revised is not None else None, milestones))
        return out
