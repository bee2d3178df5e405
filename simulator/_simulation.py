"""The simulation loop: every tenant advances week by week; events come out in occurred_at order."""

from __future__ import annotations

from collections.abc import Iterator

from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e
from sunday.ml.v1.events_pb2 import Envelope

from mesh.events import new_envelope
from simulator._activity import ActivityFlow
from simulator._clock import DAY, WEEK, to_datetime
from simulator._config import SimConfig
from simulator._context import EventQueue, TenantContext
from simulator._engagement import EngagementFlow
from simulator._meetings import MeetingFlow
from simulator._projects import ProjectFlow
from simulator._rng import IdSource, rng_for
from simulator._tasks import TaskFlow
from simulator._truth import PersonTruth, Truth
from simulator._workflows import WorkflowFlow
from simulator._world import Tenant, World

# Work of a week may start up to half a day before its Monday 00:00 UTC (time zones east of UTC), so
# events are released only up to a day before the end of the generated week.
_RELEASE_LAG = DAY


class _TenantSim:
    def __init__(self, world: World, tenant: Tenant, index: int, queue: EventQueue) -> None:
        seed = world.config.seed
        self.ctx = TenantContext(world, tenant, queue)
        ids = IdSource(rng_for(seed, "ids", index))
        self.tasks = TaskFlow(self.ctx, rng_for(seed, "tasks", index), ids)
        self.projects = ProjectFlow(self.ctx, self.tasks.tasks_by_milestone)
        self.activity = ActivityFlow(self.ctx, rng_for(seed, "activity", index), ids)
        self.engagement = EngagementFlow(self.ctx, rng_for(seed, "engagement", index), ids)
        self.meetings = MeetingFlow(self.ctx, rng_for(seed, "meetings", index), ids)
        self.workflows = WorkflowFlow(self.ctx, rng_for(seed, "workflows", index), ids)
        self._join()

    def _join(self) -> None:
        ctx = self.ctx
        for i, p in enumerate(ctx.tenant.people):
            at = p.joined_at if p.joined_at > ctx.world.t0 else ctx.world.t0 - DAY + i
            ctx.emit(at, e.UserJoined(
                user_id=p.user_id, display_name=p.name, role=p.role, seniority=p.seniority, timezone=p.timezone,
                capacity_hours_per_week=p.capacity_hours,
                skills=[c.Skill(name=s, level=lv) for s, lv in sorted(p.skills.items())]))

    def week(self, week_start: float) -> None:
        self.projects.week(week_start)
        self.tasks.week(week_start)
        self.activity.week(week_start)
        self.engagement.week(week_start)
        self.meetings.week(week_start)


class Simulation:
    """A run of the simulated world. Iterate :meth:`events`; afterwards :attr:`truth` is complete.

    >>> sim = Simulation(SimConfig(users_per_tenant=20, weeks=1, seed=1))
    >>> n = sum(1 for _ in sim.events())
    >>> len(sim.truth.tasks) > 0
    True
    """

    def __init__(self, config: SimConfig, world: World | None = None) -> None:
        self.config = config
        self.world = world or World.generate(config)
        self._truth: Truth | None = None
        self._started = False

    @property
    def truth(self) -> Truth:
        if self._truth is None:
            raise RuntimeError("the truth is complete only after events() has been exhausted")
        return self._truth

    def events(self) -> Iterator[Envelope]:
        """Envelopes in occurred_at order (ties in a fixed order); deterministic for a given config."""
        if self._started:
            raise RuntimeError("a Simulation runs once; make a new one to replay")
        self._started = True
        world, queue = self.world, EventQueue()
        sims = [_TenantSim(world, t, i, queue) for i, t in enumerate(world.tenants)]
        ids = IdSource(rng_for(self.config.seed, "event_ids"))
        producer = self.config.producer
        for w in range(self.config.weeks):
            week_start = world.t0 + w * WEEK
            for sim in sims:
                sim.week(week_start)
            release = week_start + WEEK - _RELEASE_LAG if w < self.config.weeks - 1 else world.horizon
            for t, tenant_id, payload in queue.pop_before(min(release, world.horizon)):
                yield new_envelope(tenant_id, payload, producer=producer, occurred_at=to_datetime(t),
                                   event_id=ids.next())
        self._truth = _collect(sims)


def _collect(sims: list[_TenantSim]) -> Truth:
    people = tuple(PersonTruth(p.tenant_id, p.user_id, p.role, p.seniority, p.timezone, p.capacity_hours,
                               dict(p.skills), dict(p.speed), p.preference, to_datetime(p.joined_at))
                   for s in sims for p in s.ctx.tenant.people)
    return Truth(
        people=people,
        projects=tuple(x for s in sims for x in s.projects.truth()),
        tasks=tuple(x for s in sims for x in s.tasks.task_truths),
        assignments=tuple(x for s in sims for x in s.tasks.assignment_truths),
        comments=tuple(x for s in sims for x in s.tasks.comment_truths),
        anomalies=tuple(x for s in sims for x in s.activity.truth),
        workflows=tuple(x for s in sims for x in s.workflows.truth()),
        meetings=tuple(x for s in sims for x in s.meetings.truth),
    )


def simulate(config: SimConfig) -> Iterator[Envelope]:
    """The event stream of ``config`` (use :class:`Simulation` to get the truth as well)."""
    return Simulation(config).events()
