"""PLANTED repeated manual workflows (for the automation capability) and existing automations.

A planted workflow: after every trigger event that matches (in a project the person is a member of),
the same person performs the same steps by hand a few minutes later (``user_activity`` events whose
resource is ``"<task id>:<detail>"``), nine times out of ten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import Message
from sunday.ml.v1 import events_pb2 as e

from simulator import _vocab_talk as talk
from simulator._clock import DAY, next_work_time
from simulator._context import TaskState, TenantContext
from simulator._rng import IdSource
from simulator._truth import WorkflowStep, WorkflowTruth

P_PERFORMED = 0.9


@dataclass
class _Planted:
    workflow_id: str
    user_id: str
    trigger_type: str
    condition: str
    steps: tuple[WorkflowStep, ...]
    projects: frozenset[str]
    triggers: int = 0
    task_ids: list[str] = field(default_factory=list)

    def matches(self, payload: Message, task: TaskState) -> bool:
        if task.project_id not in self.projects:
            return False
        if self.trigger_type == "task_status_changed":
            return isinstance(payload, e.TaskStatusChanged) and payload.to_status == e.TASK_STATUS_DONE and \
                self.condition.endswith(f"task_type={task.task_type}")
        if self.trigger_type == "task_created":
            return isinstance(payload, e.TaskCreated) and (
                self.condition == f"task_type={task.task_type}"
                or self.condition == f"priority={e.Priority.Name(payload.priority)}")
        return isinstance(payload, e.TaskAssigned) and payload.assignee_id == self.user_id


class WorkflowFlow:
    def __init__(self, ctx: TenantContext, rng: np.random.Generator, ids: IdSource) -> None:
        self.ctx = ctx
        self.rng = rng
        self.ids = ids
        self.planted = self._plant(ctx.world.config.workflows_per_tenant)
        self._automation = self._existing_automation()
        ctx.listeners.append(self.on_task_event)

    def _plant(self, n: int) -> list[_Planted]:
        rng, ctx = self.rng, self.ctx
        people = [p for p in ctx.tenant.people if ctx.member_of[p.user_id] and p.joined_at == ctx.world.t0]
        order = rng.permutation(len(people))
        planted = []
        for k in range(min(n, len(people))):
            person = people[int(order[k])]
            kind = k % 4
            mix = ctx.projects[ctx.member_of[person.user_id][0]].type_mix
            task_type = max(mix, key=lambda t: mix[t])  # the trigger should be frequent in their project
            trigger, condition = [
                ("task_status_changed", f"to_status=TASK_STATUS_DONE,task_type={task_type}"),
                ("task_created", f"task_type={task_type}"),
                ("task_assigned", "assignee_id=self"),
                ("task_created", "priority=PRIORITY_HIGH"),
            ][kind]
            picks = rng.choice(len(talk.MANUAL_STEPS), size=int(rng.integers(2, 5)), replace=False)
            steps = tuple(WorkflowStep(*talk.MANUAL_STEPS[int(i)]) for i in picks)
            planted.append(_Planted(f"{ctx.tenant.tenant_id}-wf{k}", person.user_id, trigger, condition, steps,
                                    frozenset(ctx.member_of[person.user_id])))
        return planted

    def _existing_automation(self) -> tuple[str, str]:
        """One automation the tenant already has: when a task of its first project is done, archive it."""
        ctx = self.ctx
        project = ctx.tenant.projects[0]
        automation_id = f"{ctx.tenant.tenant_id}-auto0"
        ctx.emit(ctx.world.t0 - DAY + 60.0, e.AutomationCreated(
            automation_id=automation_id, created_by=project.owner_id,
            trigger=f"task_status_changed to_status=TASK_STATUS_DONE project={project.project_id}",
            actions=["notify owner", "move to archive"]))
        return automation_id, project.project_id

    def on_task_event(self, t: float, payload: Message, task: TaskState) -> None:
        if isinstance(payload, e.TaskStatusChanged) and payload.to_status == e.TASK_STATUS_DONE and \
                task.project_id == self._automation[1]:
            ok = self.rng.random() < 0.97
            duration_ms = round(float(self.rng.lognormal(3.5, 0.5)), 1)
            self.ctx.emit(t + float(self.rng.uniform(0.5, 5.0)), e.AutomationRun(
                automation_id=self._automation[0], succeeded=ok, duration_ms=duration_ms,
                error="" if ok else "target board is read-only"))
        for wf in self.planted:
            if wf.matches(payload, task):
                self._perform(wf, t, task)

    def _perform(self, wf: _Planted, t: float, task: TaskState) -> None:
        rng, ctx = self.rng, self.ctx
        if t < ctx.horizon:
            wf.triggers += 1
        if rng.random() >= P_PERFORMED:
            return
        person = ctx.people[wf.user_id]
        at = next_work_time(t + 30.0 + float(rng.exponential(300.0)), person.utc_offset_h, person.hours_per_day)
        for step in wf.steps:
            resource = f"{task.task_id}:{step.detail}"
            ctx.emit(at, e.UserActivity(user_id=wf.user_id, action=step.action, resource=resource, count=1,
                                        ip=person.home_ip, device=person.device))
            at += float(rng.uniform(15.0, 90.0))
        if at < ctx.horizon:
            wf.task_ids.append(task.task_id)

    def truth(self) -> list[WorkflowTruth]:
        return [WorkflowTruth(self.ctx.tenant.tenant_id, wf.workflow_id, wf.user_id, wf.trigger_type,
                              tuple(sorted(wf.projects)), wf.condition, wf.steps, wf.triggers, len(wf.task_ids),
                              tuple(wf.task_ids))
                for wf in self.planted]
