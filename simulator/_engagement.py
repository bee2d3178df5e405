"""Views and clicks driven by latent preferences (the personalization truth).

A person views tasks of their projects with probability proportional to exp(BETA * preference . item);
dwell time grows with the affinity. Some days the product recommends three tasks; a recommended task is
clicked with probability sigmoid(CLICK_SLOPE * affinity) (a ``suggestion_feedback`` CLICKED or IGNORED).
"""

from __future__ import annotations

import numpy as np
from sunday.ml.v1 import events_pb2 as e

from simulator._clock import is_workday, work_window, workdays
from simulator._context import TaskState, TenantContext
from simulator._rng import IdSource
from simulator._world import Person

BETA = 4.0
CLICK_SLOPE = 5.0
SOURCES = ("board", "search", "notification")
SOURCE_PROBS = (0.55, 0.2, 0.25)


class EngagementFlow:
    def __init__(self, ctx: TenantContext, rng: np.random.Generator, ids: IdSource) -> None:
        self.ctx = ctx
        self.rng = rng
        self.ids = ids
        self._pref = {p.user_id: np.array(p.preference) for p in ctx.tenant.people}

    def week(self, week_start: float) -> None:
        for day in workdays(week_start):
            if not is_workday(day):
                continue
            pools = self._pools(day)
            for person in self.ctx.tenant.people:
                self._day(person, day, pools)

    def _pools(self, day: int) -> dict[str, list[TaskState]]:
        """Tasks visible on that day: created before the earliest working window of the day."""
        cutoff = day * 86400.0 - 12 * 3600.0
        return {pid: [t for t in tasks if t.created < cutoff] for pid, tasks in self.ctx.recent.items()}

    def _day(self, person: Person, day: int, pools: dict[str, list[TaskState]]) -> None:
        start, end = work_window(day, person.utc_offset_h, person.hours_per_day)
        if person.joined_at > start or start >= self.ctx.horizon:
            return
        items = [t for pid in self.ctx.member_of[person.user_id] for t in pools[pid]]
        if not items:
            return
        rng = self.rng
        vectors = np.stack([t.vector for t in items])
        affinity = vectors @ self._pref[person.user_id]
        weights = np.exp(BETA * affinity)
        n = int(rng.poisson(5.0 * person.activity_rate))
        if n:
            chosen = rng.choice(len(items), size=n, p=weights / weights.sum())
            times = np.sort(rng.uniform(start, end, size=n))
            sources = rng.choice(len(SOURCES), size=n, p=SOURCE_PROBS)
            for i, t, s in zip(chosen, times, sources, strict=True):
                self._view(float(t), person, items[int(i)], float(affinity[int(i)]), SOURCES[int(s)])
        if rng.random() < 0.3:
            self._recommend(person, items, affinity, float(rng.uniform(start, end)))

    def _view(self, t: float, person: Person, task: TaskState, affinity: float, source: str) -> None:
        dwell = float(self.rng.lognormal(np.log(20.0) + 1.2 * affinity, 0.5))
        self.ctx.emit(t, e.TaskViewed(task_id=task.task_id, project_id=task.project_id, user_id=person.user_id,
                                      dwell_seconds=round(dwell, 1), source=source))

    def _recommend(self, person: Person, items: list[TaskState], affinity: np.ndarray, t: float) -> None:
        rng = self.rng
        for i in rng.choice(len(items), size=min(3, len(items)), replace=False):
            task, aff = items[int(i)], float(affinity[int(i)])
            clicked = rng.random() < 1.0 / (1.0 + np.exp(-CLICK_SLOPE * aff))
            action = e.FEEDBACK_ACTION_CLICKED if clicked else e.FEEDBACK_ACTION_IGNORED
            self.ctx.emit(t, e.SuggestionFeedback(suggestion_id=self.ids.next(), capability="personalization",
                                                  user_id=person.user_id, action=action, item_id=task.task_id))
            if clicked:
                self._view(t + 2.0, person, task, aff, "recommendation")
