"""Everyday activity (logins, edits, exports, ...) and PLANTED anomalous bursts, labelled in the truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sunday.ml.v1 import events_pb2 as e

from simulator import _vocab_talk as talk
from simulator._clock import DAY, HOUR, WEEK, is_workday, to_datetime, work_window, workdays
from simulator._context import TenantContext
from simulator._rng import IdSource
from simulator._text import pick
from simulator._truth import AnomalyTruth
from simulator._world import Person

ANOMALY_KINDS: tuple[str, ...] = (
    "mass_export", "bulk_delete_spree", "off_hours_access", "permission_escalation", "api_scraping",
)

# action -> (events per working day for an average person, min count, max count)
NORMAL_RATES: dict[str, tuple[float, int, int]] = {
    "edit": (4.0, 1, 6), "api_call": (0.6, 1, 40), "export": (0.08, 5, 200), "bulk_delete": (0.03, 2, 25),
}


@dataclass(frozen=True)
class PlannedAnomaly:
    user_id: str
    kind: str
    day: int
    start: float


class ActivityFlow:
    """Per person and working day: a login or two, edits, API calls, rare exports and bulk deletes;
    plus manual board actions (the background the planted workflows must stand out from)."""

    def __init__(self, ctx: TenantContext, rng: np.random.Generator, ids: IdSource) -> None:
        self.ctx = ctx
        self.rng = rng
        self.ids = ids
        self.anomalies = self._plan()
        self.truth: list[AnomalyTruth] = []

    def _plan(self) -> list[PlannedAnomaly]:
        rng, ctx = self.rng, self.ctx
        people = [p for p in ctx.tenant.people if p.joined_at == ctx.world.t0]
        n = round(ctx.world.config.anomaly_user_fraction * len(people))
        if ctx.world.config.anomaly_user_fraction > 0 and len(people) >= 10:
            n = max(n, 1)
        chosen = rng.choice(len(people), size=min(n, len(people)), replace=False)
        days = int((ctx.horizon - ctx.world.t0) // DAY)
        plans = []
        for i in sorted(int(x) for x in chosen):
            kind = ANOMALY_KINDS[int(rng.integers(len(ANOMALY_KINDS)))]
            day = int(ctx.world.t0 // DAY) + 1 + int(rng.integers(max(1, days - 1)))
            plans.append(PlannedAnomaly(people[i].user_id, kind, day, self._anomaly_start(people[i], kind, day)))
        return plans

    def _anomaly_start(self, person: Person, kind: str, day: int) -> float:
        if kind == "off_hours_access":  # 01:00-04:00 local
            return day * DAY + (1.0 + float(self.rng.uniform(0, 3))) * HOUR - person.utc_offset_h * HOUR
        start, end = work_window(day, person.utc_offset_h, person.hours_per_day)
        return float(self.rng.uniform(start, max(start, end - 2 * HOUR)))

    def week(self, week_start: float) -> None:
        for day in workdays(week_start):
            for person in self.ctx.tenant.people:
                self._day(person, day)
        for plan in self.anomalies:
            if week_start <= plan.day * DAY < week_start + WEEK and plan.start < self.ctx.horizon:
                self._burst(plan)

    def _emit(self, t: float, person: Person, action: str, resource: str = "", count: int = 1,
              ip: str = "", device: str = "") -> None:
        self.ctx.emit(t, e.UserActivity(user_id=person.user_id, action=action, resource=resource, count=count,
                                        ip=ip or person.home_ip, device=device or person.device))

    def _day(self, person: Person, day: int) -> None:
        """One local working day (``day`` counts local days; its window may start on the UTC day before)."""
        rng, ctx = self.rng, self.ctx
        if not is_workday(day):
            return
        start, end = work_window(day, person.utc_offset_h, person.hours_per_day)
        if person.joined_at > start or start >= ctx.horizon:
            return
        rate = person.activity_rate
        session = self.ids.next()[:13]
        for k in range(1 + int(rng.random() < 0.3 * rate)):
            t = start + float(rng.uniform(-0.5, 0.5)) * HOUR + k * 4 * HOUR
            ctx.emit(t, e.UserActivity(user_id=person.user_id, action="login", ip=person.home_ip,
                                       device=person.device, session_id=session))
        projects = ctx.member_of[person.user_id]
        for action, (per_day, lo, hi) in NORMAL_RATES.items():
            for t in rng.uniform(start, end, size=int(rng.poisson(per_day * rate))):
                target = self._resource(projects)
                self._emit(float(t), person, action, target, int(rng.integers(lo, hi + 1)))
        if person.is_admin and rng.random() < 0.06:
            self._emit(float(rng.uniform(start, end)), person, "permission_change", "workspace", 1)
        for t in rng.uniform(start, end, size=int(rng.poisson(0.6))):  # manual board actions
            action, detail = pick(rng, talk.MANUAL_STEPS)
            self._emit(float(t), person, action, f"{self._resource(projects)}:{detail}")

    def _resource(self, projects: list[str]) -> str:
        if not projects:
            return "workspace"
        recent = self.ctx.recent[pick(self.rng, projects)]
        return recent[int(self.rng.integers(len(recent)))].task_id if recent else pick(self.rng, projects)

    def _burst(self, plan: PlannedAnomaly) -> None:
        rng, person = self.rng, self.ctx.people[plan.user_id]
        t, n = plan.start, 0
        ip = f"185.{int(rng.integers(256))}.{int(rng.integers(256))}.{int(rng.integers(1, 255))}"
        steps: dict[str, tuple[tuple[str, int, int], ...]] = {
            "mass_export": (("export", 500, 20000),),
            "bulk_delete_spree": (("bulk_delete", 50, 3000),),
            "off_hours_access": (("login", 1, 1), ("api_call", 20, 400), ("export", 100, 2000)),
            "permission_escalation": (("permission_change", 1, 5),),
            "api_scraping": (("api_call", 200, 1000),),
        }
        total = int(rng.integers(15, 40)) if plan.kind != "api_scraping" else int(rng.integers(80, 200))
        foreign = plan.kind == "off_hours_access"
        for i in range(total):
            action, lo, hi = steps[plan.kind][i % len(steps[plan.kind])]
            t += float(rng.exponential(90.0 if plan.kind != "api_scraping" else 20.0))
            self._emit(t, person, action, "workspace", int(rng.integers(lo, hi + 1)),
                       ip=ip if foreign else "", device="unknown-cli" if foreign else "")
            n += 1
        self.truth.append(AnomalyTruth(self.ctx.tenant.tenant_id, plan.user_id, plan.kind,
                                       to_datetime(plan.start), to_datetime(t), n))

