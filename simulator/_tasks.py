"""Tasks: creation with varied text, assignment, duration, status changes, comments, completion."""

from __future__ import annotations

import heapq
from collections import deque
from datetime import UTC, datetime

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from simulator import _assign
from simulator import _vocab as v
from simulator._clock import DAY, HOUR, WEEK, add_work_hours, next_work_time, to_datetime
from simulator._context import PersonState, TaskState, TenantContext
from simulator._rng import IdSource
from simulator._text import comment_text, pick, task_slots, task_text
from simulator._truth import AssignmentTruth, Candidate, CommentTruth, TaskTruth
from simulator._world import POINT_PROBS, POINTS, Project, base_hours

PRIORITY_PROBS = (0.2, 0.45, 0.27, 0.08)  # low, medium, high, critical
ST = e.TaskStatus


def _ts(t: float) -> Timestamp:
    ts = Timestamp()
    ts.FromSeconds(int(t))
    return ts


def true_hours(rng: np.random.Generator, points: int, task_type: str, speed: float, match: float,
               slip_factor: float) -> float:
    """The work a task really takes: size, kind, the assignee's speed and skill, the project, log-normal noise."""
    mean = base_hours(points) * v.TYPE_HOURS[task_type] / speed * (1.0 + 0.8 * (1.0 - match)) * slip_factor
    return max(0.25, mean * float(rng.lognormal(0.0, 0.4)))


class TaskFlow:
    """Creates the tasks of a tenant week by week and schedules each one's whole life at creation."""

    def __init__(self, ctx: TenantContext, rng: np.random.Generator, ids: IdSource) -> None:
        self.ctx = ctx
        self.rng = rng
        self.ids = ids
        self._slots: dict[str, tuple[dict[str, str], int, int, str, tuple[str, ...]]] = {}
        self._counter = 0
        self._recent_ids: deque[str] = deque(maxlen=200)  # duplicates paraphrase one of these
        self.task_truths: list[TaskTruth] = []
        self.assignment_truths: list[AssignmentTruth] = []
        self.comment_truths: list[CommentTruth] = []
        self.tasks_by_milestone: dict[str, list[TaskState]] = {}

    def week(self, week_start: float) -> None:
        week_end = week_start + WEEK
        creations: list[tuple[float, Project]] = []
        for project in self.ctx.tenant.projects:
            lo, hi = max(week_start, project.start), min(week_end, project.window_end)
            if hi <= lo:
                continue
            lam = project.tasks_per_week * project.scope_factor * (hi - lo) / WEEK
            owner = self.ctx.people[project.owner_id]
            for t in self.rng.uniform(lo, hi, size=int(self.rng.poisson(lam))):
                creations.append((next_work_time(float(t), owner.utc_offset_h, owner.hours_per_day), project))
        creations.sort(key=lambda c: (c[0], c[1].project_id))
        for t, project in creations:
            if t < self.ctx.horizon:
                self._create(t, project)

    # ------------------------------------------------------------------ creation
    def _create(self, t: float, project: Project) -> None:
        rng = self.rng
        self._counter += 1
        task_id = f"{project.project_id}-t{self._counter:05d}"
        duplicate_of = ""
        if self._slots and rng.random() < self.ctx.world.config.duplicate_fraction:
            duplicate_of = pick(rng, self._recent_ids)
            slots, points, template, task_type, required = self._slots[duplicate_of]
        else:
            task_type = str(rng.choice(list(project.type_mix), p=list(project.type_mix.values())))
            points = int(rng.choice(POINTS, p=POINT_PROBS))
            slots, template = task_slots(rng, project.topic), -1
            pool = v.TYPE_SKILLS[task_type]
            required = tuple(str(s) for s in rng.choice(pool, size=int(rng.integers(1, 4)), replace=False))
        title, description, template = task_text(rng, task_type, points, slots, avoid_template=template)
        self._slots[task_id] = (slots, points, template, task_type, required)
        self._recent_ids.append(task_id)
        priority = e.Priority.ValueType(int(rng.choice(4, p=PRIORITY_PROBS)) + 1)
        milestone = next((m for m in project.milestones if m.window_end >= t), project.milestones[-1])
        recent = self.ctx.recent[project.project_id]
        deps = [d.task_id for d in list(recent)[-8:] if rng.random() < 0.06]
        estimate = 0.0
        if rng.random() < 0.7:
            estimate = round(base_hours(points) * v.TYPE_HOURS[task_type] * float(rng.lognormal(0, 0.3)) * 2) / 2
        world = self.ctx.world
        vec = (0.6 * np.array(project.topic_vector) + 0.6 * np.array(world.type_vectors[task_type])
               + 0.5 * rng.normal(size=len(project.topic_vector)))
        task = TaskState(task_id, project.project_id, milestone.milestone_id, task_type, priority,
                         slots["component"], t, vec / np.linalg.norm(vec))
        self.ctx.emit_task(t, e.TaskCreated(
            task_id=task_id, project_id=project.project_id, milestone_id=milestone.milestone_id, title=title,
            description=description, task_type=task_type, priority=priority, required_skills=required,
            estimate_hours=estimate, due_at=_ts(milestone.due), depends_on=deps, created_by=project.owner_id,
        ), task)
        recent.append(task)
        self.ctx.tasks[task_id] = task
        self.tasks_by_milestone.setdefault(milestone.milestone_id, []).append(task)
        deps_done = max((self.ctx.tasks[d].done for d in deps), default=0.0)
        self._assign(task, project, points, required, deps_done, duplicate_of)

    # ---------------------------------------------------------------- assignment
    def _assign(self, task: TaskState, project: Project, points: int, required: tuple[str, ...],
                deps_done: float, duplicate_of: str) -> None:
        rng, ctx = self.rng, self.ctx
        owner = ctx.people[project.owner_id]
        ta = next_work_time(task.created + float(rng.uniform(0.1, 4.0)) * HOUR, owner.utc_offset_h,
                            owner.hours_per_day)
        members = [ctx.states[u] for u in project.member_ids if ctx.joined(u, ta)] or \
                  [s for s in ctx.states.values() if ctx.joined(s.person.user_id, ta)]
        scored = _assign.score_candidates(members, ta, project.project_id, task.task_type, required, task.priority)
        chosen = scored[_assign.choose(rng, scored)]
        best = max(scored, key=lambda s: s.utility)
        suggestion_id = ""
        if rng.random() < 0.3:  # the product showed a suggestion (the best candidate) for this task
            suggestion_id = self.ids.next()
            accepted = chosen.user_id == best.user_id
            ctx.emit(ta - 30.0, e.SuggestionFeedback(
                suggestion_id=suggestion_id, capability="assignment", user_id=owner.user_id, item_id=best.user_id,
                action=e.FEEDBACK_ACTION_ACCEPTED if accepted else e.FEEDBACK_ACTION_REJECTED))
            suggestion_id = suggestion_id if accepted else ""
        task.assignee = chosen.user_id
        ctx.emit_task(ta, e.TaskAssigned(task_id=task.task_id, project_id=project.project_id,
                                         assignee_id=chosen.user_id, assigned_by=owner.user_id,
                                         suggestion_id=suggestion_id), task)
        state = ctx.states[chosen.user_id]
        state.project_counts[project.project_id] = state.project_counts.get(project.project_id, 0) + 1
        self.assignment_truths.append(AssignmentTruth(
            ctx.tenant.tenant_id, task.task_id, project.project_id, to_datetime(ta), chosen.user_id, best.user_id,
            tuple(Candidate(s.user_id, s.utility, s.skill_match, s.load_ratio, s.history, s.role_fit)
                  for s in scored)))
        self._live(task, project, points, required, ta, deps_done, chosen.skill_match, duplicate_of)

    # ----------------------------------------------------------------- lifecycle
    def _live(self, task: TaskState, project: Project, points: int, required: tuple[str, ...], ta: float,
              deps_done: float, match: float, duplicate_of: str) -> None:
        rng, ctx = self.rng, self.ctx
        state = ctx.states[task.assignee]
        person = state.person
        tz, hpd = person.utc_offset_h, person.hours_per_day
        speed = person.speed[task.task_type]
        hours = true_hours(rng, points, task.task_type, speed, match, project.slip_factor)
        start = next_work_time(max(ta + 60.0, deps_done, state.busy_until), tz, hpd)
        self._status(start, task, ST.TASK_STATUS_TODO, ST.TASK_STATUS_IN_PROGRESS)
        blocked_hours = 0.0
        p_block = 0.1 + 0.1 * project.slips + 0.1 * (deps_done > 0)
        if rng.random() < p_block:
            part = float(rng.uniform(0.2, 0.8))
            t_block = add_work_hours(start, part * hours, tz, hpd)
            blocked_hours = float(rng.lognormal(np.log(6.0), 0.6))
            self._status(t_block, task, ST.TASK_STATUS_IN_PROGRESS, ST.TASK_STATUS_BLOCKED)
            resume = next_work_time(t_block + blocked_hours * HOUR, tz, hpd)
            self._status(resume, task, ST.TASK_STATUS_BLOCKED, ST.TASK_STATUS_IN_PROGRESS)
            work_end = add_work_hours(resume, (1.0 - part) * hours, tz, hpd)
        else:
            work_end = add_work_hours(start, hours, tz, hpd)
        self._status(work_end, task, ST.TASK_STATUS_IN_PROGRESS, ST.TASK_STATUS_IN_REVIEW)
        done = add_work_hours(work_end, float(rng.lognormal(np.log(3.0), 0.7)), tz, hpd)
        self._status(done, task, ST.TASK_STATUS_IN_REVIEW, ST.TASK_STATUS_DONE)
        ctx.emit_task(done, e.TaskCompleted(task_id=task.task_id, project_id=task.project_id,
                                            assignee_id=person.user_id, actual_hours=round(hours, 2)), task)
        task.done = done
        state.busy_until = work_end
        state.open.append((start, work_end, hours))
        self._learn(state, required, done)
        self._maybe_update(task, project, done)
        self._comments(task, project, done, blocked_hours > 0)
        self.task_truths.append(TaskTruth(
            ctx.tenant.tenant_id, task.task_id, task.project_id, task.milestone_id, task.task_type, points,
            task.priority, required, to_datetime(task.created), person.user_id, match, speed, hours, blocked_hours,
            to_datetime(start), to_datetime(done), done < ctx.horizon, duplicate_of,
            tuple(float(x) for x in task.vector)))

    def _status(self, t: float, task: TaskState, old: e.TaskStatus.ValueType, new: e.TaskStatus.ValueType) -> None:
        self.ctx.emit_task(t, e.TaskStatusChanged(task_id=task.task_id, project_id=task.project_id,
                                                  from_status=old, to_status=new, actor_id=task.assignee), task)

    def _learn(self, state: PersonState, required: tuple[str, ...], done: float) -> None:
        """Practice makes perfect: enough finished tasks needing a skill raise its level (at ``done``)."""
        raised = False
        for skill in required:
            state.practice[skill] = state.practice.get(skill, 0) + 1
            level = max(state.levels.get(skill, 0), *(lv for _, s, lv in state.pending_levels if s == skill), 0)
            if level < 5 and state.practice[skill] >= 3 * (level + 1):
                state.practice[skill] = 0
                heapq.heappush(state.pending_levels, (done, skill, level + 1))
                raised = True
        if raised:
            levels = dict(state.levels)
            for _, s, lv in state.pending_levels:
                levels[s] = max(levels.get(s, 0), lv)
            self.ctx.emit(done, e.UserSkillsUpdated(
                user_id=state.person.user_id,
                skills=[c.Skill(name=s, level=lv) for s, lv in sorted(levels.items())]))

    def _maybe_update(self, task: TaskState, project: Project, done: float) -> None:
        rng = self.rng
        if rng.random() >= 0.2:
            return
        t = task.created + float(rng.uniform(1.0, 48.0)) * HOUR
        if t >= done:
            return
        update = e.TaskUpdated(task_id=task.task_id, project_id=task.project_id, updated_by=project.owner_id)
        kind = int(rng.integers(3))
        if kind == 0:
            update.priority = e.Priority.ValueType(min(4, task.priority + 1))
        elif kind == 1:
            update.estimate_hours = float(rng.integers(1, 40))
        else:
            update.due_at.CopyFrom(_ts(task.created + float(rng.uniform(3, 20)) * DAY))
        self.ctx.emit_task(t, update, task)

    def _comments(self, task: TaskState, project: Project, done: float, blocked: bool) -> None:
        rng, ctx = self.rng, self.ctx
        n = int(rng.poisson(1.0 + 1.0 * blocked + 0.4 * project.slips))
        p_neg = 0.12 + 0.4 * blocked + 0.2 * project.slips
        p_pos = max(0.05, 0.3 - 0.15 * project.slips - 0.1 * blocked)
        probs = np.array([p_neg, max(0.0, 1.0 - p_neg - p_pos), p_pos])
        for t in sorted(rng.uniform(task.created + 60.0, done + HOUR, size=n)):
            label = ("negative", "neutral", "positive")[int(rng.choice(3, p=probs / probs.sum()))]
            author = task.assignee if rng.random() < 0.5 else pick(rng, project.member_ids)
            comment_id = f"{task.task_id}-c{self.ids.next()[:8]}"
            text = comment_text(rng, label, task.component)
            ctx.emit(float(t), e.TaskCommented(task_id=task.task_id, project_id=task.project_id,
                                               comment_id=comment_id, author_id=author, text=text))
            if t < ctx.horizon:
                score = {"negative": -0.7, "neutral": 0.0, "positive": 0.7}[label]
                self.comment_truths.append(CommentTruth(ctx.tenant.tenant_id, comment_id, task.task_id, label,
                                                        score, datetime.fromtimestamp(float(t), UTC)))
