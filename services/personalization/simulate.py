"""Closed loop in the simulated world: a policy recommends, the simulated people click by their latent
affinity (the simulator's rule: P(click) = sigmoid(CLICK_SLOPE * preference . item_vector)), and the
feedback goes back into the policy's state as ``suggestion_feedback`` events through the service's own
code path (:class:`Recommender` over the reducers in an in-memory store).

The world's events (tasks, projects, people, views) come from the simulator; its own random-recommender
feedback (the random-logging mode, kept for off-policy evaluation) is left out of the loop. Requests are
drawn once per run (a person asks on 30% of their workdays, as the simulator's recommender) and the click
draws are common random numbers: every policy faces the same requests and the same dice. The oracle
shows the top-k of the true click probabilities. CTR is the mean true click probability of the shown
items (the clicks themselves are drawn and fed back); regret is oracle minus policy expected clicks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from sunday.ml.v1 import events_pb2 as e

from mesh.events import Envelope, new_envelope, occurred_at
from mesh.features import InMemoryAggregates
from services.personalization.factors import Interaction, PolicyModel, build_model, fit_segments, train_als
from services.personalization.linucb import LinUCBConfig
from services.personalization.recommend import Policy, Recommender, RecommendRequest
from services.personalization.state import PERSONALIZATION_REDUCERS, PersonState
from simulator import SimConfig, Simulation
from simulator._engagement import CLICK_SLOPE

LOOP_POLICIES: tuple[str, ...] = ("hybrid", "linucb", "als", "popularity", "random", "oracle")
DAY = 86400.0


@dataclass(frozen=True)
class LoopConfig:
    users: int = 40
    weeks: int = 6
    warmup_weeks: int = 1
    """Weeks of the world before the first recommendation (history for ALS, segments, popularity)."""
    seed: int = 7
    k: int = 3
    ask_probability: float = 0.3
    linucb: LinUCBConfig = field(default_factory=lambda: LinUCBConfig(alpha=0.3, ridge=1.0, epsilon=0.05))


@dataclass
class PolicyRun:
    name: str
    shown: int = 0
    expected_clicks: float = 0.0
    clicks: int = 0
    oracle_clicks: float = 0.0
    weekly_ctr: list[float] = field(default_factory=list)
    cumulative_regret: list[float] = field(default_factory=list)

    @property
    def ctr(self) -> float:
        return self.expected_clicks / self.shown if self.shown else 0.0


@dataclass(frozen=True)
class World:
    events: list[Envelope]
    tenant_id: str
    preference: dict[str, np.ndarray]
    vector: dict[str, np.ndarray]
    requests: list[tuple[float, str]]
    """(time, user id) of every recommendation request, in time order."""
    dice: np.ndarray
    """(n_requests, k) uniform draws of the clicks."""
    eval_start: float
    week_starts: list[float]


def build_world(cfg: LoopConfig) -> World:
    sim = Simulation(SimConfig(users_per_tenant=cfg.users, weeks=cfg.weeks, seed=cfg.seed))
    events = [env for env in sim.events() if env.type != "suggestion_feedback"]
    truth = sim.truth
    t0 = sim.world.t0
    preference = {p.user_id: np.asarray(p.preference) for p in truth.people}
    vector = {t.task_id: np.asarray(t.item_vector) for t in truth.tasks}
    rng = np.random.default_rng(cfg.seed + 1)
    eval_start = t0 + cfg.warmup_weeks * 7 * DAY
    requests: list[tuple[float, str]] = []
    for day in range(max(cfg.warmup_weeks * 7, 1), cfg.weeks * 7):  # day 0 is history only
        if day % 7 >= 5:
            continue
        for user in sorted(preference):
            if rng.random() < cfg.ask_probability:
                requests.append((t0 + day * DAY + float(rng.uniform(9, 17)) * 3600.0, user))
    requests.sort()
    week_starts = [t0 + w * 7 * DAY for w in range(cfg.warmup_weeks, cfg.weeks)]
    return World(events, sim.world.tenants[0].tenant_id, preference, vector, requests,
                 rng.random((len(requests), cfg.k)), eval_start, week_starts)


def _model(store: InMemoryAggregates, people: Sequence[str], tenant: str, seed: int, with_als: bool) -> PolicyModel:
    states = [s for s in store.load_many(PersonState, tenant, people) if s is not None]
    als = train_als((Interaction(s.entity_id, t, float(n)) for s in states for t, n in s.task_views.items()),
                    factors=16, iterations=10, seed=seed) if with_als else None
    return build_model("sim", als, states, k=4, seed=seed)


def feedback_events(tenant: str, user: str, suggestion: str, item: str, clicked: bool, at: float) -> list[Envelope]:
    when = datetime.fromtimestamp(at, UTC)
    action = e.FEEDBACK_ACTION_CLICKED if clicked else e.FEEDBACK_ACTION_IGNORED
    out = [new_envelope(tenant, e.SuggestionFeedback(suggestion_id=suggestion, capability="personalization",
                                                      user_id=user, action=action, item_id=item),
                        producer="simulator", occurred_at=when)]
    if clicked:
        out.append(new_envelope(tenant, e.TaskViewed(task_id=item, user_id=user, dwell_seconds=60.0,
                                                     source="recommendation"), producer="simulator",
                                occurred_at=when))
    return out


def run_policy(world: World, name: str, cfg: LoopConfig, progress: Callable[[str], None] | None = None) -> PolicyRun:
    store = InMemoryAggregates(PERSONALIZATION_REDUCERS)
    people = sorted(world.preference)
    policy: Policy = "random" if name == "oracle" else name  # type: ignore[assignment]
    rec = Recommender(store, PolicyModel("sim", None, fit_segments([])), policy=policy, config=cfg.linucb)
    run = PolicyRun(name)
    pending, cursor, day_trained = world.events, 0, -1.0
    week_i, week_shown, week_clicks = 0, 0, 0.0
    for i, (t, user) in enumerate(world.requests):
        upto = cursor
        while upto < len(pending) and occurred_at(pending[upto]).timestamp() < t:
            upto += 1
        if upto > cursor:
            store.apply(pending[cursor:upto])
            cursor = upto
        while week_i + 1 < len(world.week_starts) and t >= world.week_starts[week_i + 1]:
            run.weekly_ctr.append(week_clicks / max(week_shown, 1))
            run.cumulative_regret.append(run.oracle_clicks - run.expected_clicks)
            week_i, week_shown, week_clicks = week_i + 1, 0, 0.0
        day = math.floor(t / DAY)
        if day != day_trained:
            rec.model = _model(store, people, world.tenant_id, cfg.seed, policy in ("als", "hybrid"))
            day_trained = day
        person = store.load(PersonState, world.tenant_id, user)
        if person is None or not person.joined:
            continue
        items = rec.candidates(world.tenant_id, person, before=t)
        if not items:
            continue
        probs = np.array([1 / (1 + math.exp(-CLICK_SLOPE * float(world.preference[user] @ world.vector[it.entity_id])))
                          for it in items])
        k = min(cfg.k, len(items))
        oracle = float(np.sort(probs)[::-1][:k].sum())
        out = rec.recommend(RecommendRequest(world.tenant_id, user, cfg.k, request_id=str(i),
                                             now=datetime.fromtimestamp(t, UTC)))
        shown = ([items[j].entity_id for j in np.argsort(-probs, kind="stable")[:k]] if name == "oracle"
                 else list(out.item_ids))
        index = {it.entity_id: j for j, it in enumerate(items)}
        feedback: list[Envelope] = []
        for slot, item in enumerate(shown):
            p = float(probs[index[item]])
            clicked = bool(world.dice[i, slot] < p)
            run.shown, run.expected_clicks, run.clicks = run.shown + 1, run.expected_clicks + p, run.clicks + clicked
            week_shown, week_clicks = week_shown + 1, week_clicks + p
            feedback += feedback_events(world.tenant_id, user, out.envelope.event_id, item, clicked, t + 30.0)
        run.oracle_clicks += oracle
        store.apply(feedback)
        if progress is not None and i % 200 == 0:
            progress(f"{name}: request {i}/{len(world.requests)}, CTR so far {run.ctr:.3f}")
    run.weekly_ctr.append(week_clicks / max(week_shown, 1))
    run.cumulative_regret.append(run.oracle_clicks - run.expected_clicks)
    return run


def closed_loop(cfg: LoopConfig, policies: Sequence[str] = LOOP_POLICIES,
                progress: Callable[[str], None] | None = None) -> dict[str, PolicyRun]:
    world = build_world(cfg)
    return {name: run_policy(world, name, cfg, progress) for name in policies}


def gap_closed(runs: dict[str, PolicyRun], policy: str = "hybrid") -> float:
    """(policy - popularity) / (oracle - popularity) of CTR: the goal is >= 0.5 for the hybrid."""
    pop, oracle = runs["popularity"].ctr, runs["oracle"].ctr
    return (runs[policy].ctr - pop) / (oracle - pop) if oracle != pop else float("nan")
