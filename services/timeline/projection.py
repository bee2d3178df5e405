"""Project completion from the open tasks *and* the scope not created yet, with correlated task speeds and
an optional shrinkage towards the current deadline.

Three parts, each switchable by :class:`ProjectParams` (``NAIVE`` turns all three off: the old forecast,
the max over independently drawn open tasks):

* **correlation**: one standard-normal speed factor per simulation shared by all the project's tasks
  (`montecarlo.sample_work`), so a run is slow or fast as a whole instead of the max over many
  independent tails;
* **future scope**: tasks keep being created until ``creation_fraction`` of the planned duration (start ->
  first deadline). Their number is Poisson with the project's creation rate so far (a Gamma posterior over
  the rate), their creation times uniform over what is left of that window, and each one's wall-clock
  duration (created -> done) is drawn from the durations of the project's tasks so far: done tasks as
  they were, open tasks as their age plus their simulated remaining time in the same run;
* **blend**: the simulated completion ``s`` (days from now) becomes ``blend * s + (1 - blend) * D`` with
  ``D`` the days to the current deadline; P(miss) is read from the unblended runs, so the blend moves the
  point forecast only.

The parameters are chosen on validation projects (`fit_project_params`), never on the held-out weeks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

import numpy as np

from services.timeline.montecarlo import CompletionForecast, FloatArray, RemainingTask, simulate_finish_times

MIN_RATE_DAYS = 7.0
"""The creation rate is n / max(elapsed, this): a project's first days say little about its pace (and a
rate from a few hours would swing the forecast, and the deadline alerts, on every new task)."""


@dataclass(frozen=True)
class ProjectParams:
    correlation: float = 0.0
    """correlation of the tasks' log-durations within one run (0 = independent)"""
    creation_fraction: float | None = None
    """tasks are created until this fraction of the planned duration; None = no future scope"""
    blend: float = 1.0
    """weight of the simulation against the current deadline (1 = simulation only)"""

    def __post_init__(self) -> None:
        if not (0.0 <= self.correlation <= 1.0 and 0.0 <= self.blend <= 1.0):
            raise ValueError(f"correlation and blend must be within [0, 1]: {self}")
        if self.creation_fraction is not None and not 0.0 < self.creation_fraction <= 2.0:
            raise ValueError(f"creation_fraction must be within (0, 2]: {self}")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ProjectParams:
        return cls(**json.loads(text))


NAIVE = ProjectParams()
"""The forecast before this module: open tasks only, independent draws, no deadline blend."""
DEFAULT = ProjectParams(correlation=0.5, creation_fraction=1.0, blend=1.0)
"""Used by models exported without fitted project parameters (e.g. the untrained smoke-test model)."""


@dataclass(frozen=True)
class ScopeSnapshot:
    """What the projection needs about a project's tasks as of ``now`` (times in days)."""

    elapsed_days: float
    """since the project started"""
    planned_days: float | None
    """from start to the first deadline it was created with; None = unknown"""
    n_created: int
    done_days: FloatArray
    """created -> done of each done task"""
    open_age_days: FloatArray
    """now - created of each open task, in the order of the remaining tasks"""

    def creation_days_left(self, fraction: float | None) -> float:
        if fraction is None or self.planned_days is None:
            return 0.0
        return max(fraction * self.planned_days - self.elapsed_days, 0.0)


def _days(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 86400.0


def scope_snapshot(start: datetime, planned_deadline: datetime | None, created: Sequence[datetime],
                   done: Sequence[tuple[datetime, datetime]], open_created: Sequence[datetime],
                   now: datetime) -> ScopeSnapshot:
    """``created``: creation times of all the project's tasks; ``done``: (created, done) of the done ones;
    ``open_created``: creation times of the open ones (aligned with the remaining tasks)."""
    planned = None if planned_deadline is None else max(_days(start, planned_deadline), 0.0)
    return ScopeSnapshot(max(_days(start, now), 0.0), planned, len(created),
                         np.asarray([max(_days(c, d), 0.0) for c, d in done], dtype=np.float64),
                         np.asarray([max(_days(c, now), 0.0) for c in open_created], dtype=np.float64))


def future_finish(scope: ScopeSnapshot, open_finish: FloatArray, fraction: float | None,
                  rng: np.random.Generator) -> FloatArray:
    """[n] latest finish (days from now) of the tasks not created yet in each run (0 when none).

    The model: a run's new tasks are a Poisson number (mean rate x the creation days left, the rate drawn
    from its Gamma posterior), each created uniformly over the days left and lasting a duration drawn
    uniformly from the run's pool (the done tasks' durations, the open ones' age + simulated remaining).
    Only their latest finish matters, and it is drawn without drawing the tasks: split by the pool entry
    they draw, the creation times of the tasks lasting entry j form independent Poisson processes of mean
    mu = rate x left / pool size over [0, left] (Poisson splitting), whose latest point is
    ``left - left * E / mu`` with E ~ Exp(1), none when that is negative. So a run costs one exponential
    draw per pool entry, whatever the number of new tasks (it used to cost one draw per new task)."""
    n = open_finish.shape[0]
    left = scope.creation_days_left(fraction)
    done, opened = scope.done_days.size, scope.open_age_days.size
    if left <= 0.0 or done + opened == 0:
        return np.zeros(n)
    rate = rng.gamma(scope.n_created + 0.5, 1.0 / max(scope.elapsed_days, MIN_RATE_DAYS), size=n)
    scale = (done + opened) / np.maximum(rate, 1e-300)  # latest creation = left - E * scale (days)
    best = np.zeros(n)
    if opened:
        best = _latest(np.add(open_finish, scope.open_age_days), left, scale, rng, best)
    # the done tasks' durations are the same in every run: longest first, and an entry that cannot beat a
    # run's best so far (duration + left <= best) is not drawn for that run (its draw could not change the
    # max, and draws are independent: the distribution is the same)
    durations = np.sort(scope.done_days)[::-1]
    for start in range(0, done, _CHUNK):
        rows = np.flatnonzero(best < durations[start] + left)
        if rows.size == 0:
            break
        pool = np.broadcast_to(durations[start: start + _CHUNK], (rows.size, min(_CHUNK, done - start)))
        best[rows] = _latest(pool, left, scale[rows], rng, best[rows])
    return best


_CHUNK = 16


def _latest(pool: FloatArray, left: float, scale: FloatArray, rng: np.random.Generator, best: FloatArray
            ) -> FloatArray:
    """max(best, latest finish of the new tasks drawing each entry of ``pool`` [runs, entries])."""
    start = rng.standard_exponential(pool.shape)
    start *= scale[:, None]
    np.subtract(left, start, out=start)
    finish = np.where(start >= 0.0, start + pool, 0.0)  # negative start: no new task drew this entry
    return np.asarray(np.maximum(best, finish.max(axis=1)), dtype=np.float64)


def simulate_runs(tasks: Sequence[RemainingTask], scope: ScopeSnapshot | None, params: ProjectParams, n: int,
                  seed: int = 0, targets: Sequence[str] | None = None) -> FloatArray:
    """[n] unblended completion times (days from now). Future scope counts for the whole project only
    (``targets`` None): which milestone a not-yet-created task will belong to is not modelled."""
    return completion_runs(_finish(tasks, params, n, seed), tasks, scope, params, seed, targets)


def _finish(tasks: Sequence[RemainingTask], params: ProjectParams, n: int, seed: int) -> FloatArray:
    """[n, tasks] simulated finish times (days from now) of the open tasks: one simulation serves the whole
    project and every milestone (the same draws, so their forecasts are consistent with each other)."""
    if not tasks:
        return np.zeros((n, 0))
    return simulate_finish_times(tasks, {}, n, seed=seed, durations="elapsed", correlation=params.correlation)


def completion_runs(finish: FloatArray, tasks: Sequence[RemainingTask], scope: ScopeSnapshot | None,
                    params: ProjectParams, seed: int = 0, targets: Sequence[str] | None = None) -> FloatArray:
    """[n] completion times of ``targets`` (None: the project, with its future scope) from ``finish``."""
    n = finish.shape[0]
    index = {t.id: i for i, t in enumerate(tasks)}
    unknown = set(targets or ()) - set(index)
    if unknown:
        raise ValueError(f"unknown target tasks: {sorted(unknown)}")
    cols = [index[t] for t in targets] if targets else list(range(len(tasks)))
    completion = finish[:, cols].max(axis=1) if cols else np.zeros(n)
    if targets is None and scope is not None:
        rng = np.random.default_rng([seed, 1])
        completion = np.maximum(completion, future_finish(scope, finish, params.creation_fraction, rng))
    return np.asarray(completion, dtype=np.float64)


def blended(samples: FloatArray, blend: float, deadline_days: float | None) -> FloatArray:
    if deadline_days is None or blend >= 1.0:
        return samples
    return np.maximum(blend * samples + (1.0 - blend) * deadline_days, 0.0)


def _summary(runs: FloatArray, params: ProjectParams, deadline_days: float | None) -> CompletionForecast:
    out = blended(runs, params.blend, deadline_days)
    p10, p50, p90 = (float(v) for v in np.quantile(out, [0.1, 0.5, 0.9]))
    miss = None if deadline_days is None else float(np.mean(runs > deadline_days))
    return CompletionForecast(p10, p50, p90, miss, out)


def forecast_project(tasks: Sequence[RemainingTask], scope: ScopeSnapshot | None, params: ProjectParams, n: int,
                     deadline_days: float | None = None, seed: int = 0,
                     targets: Sequence[str] | None = None) -> CompletionForecast:
    """p10/p50/p90 (days from now) of the blended completion and P(miss) of the simulated one."""
    return forecast_targets(tasks, scope, params, n, [(targets, deadline_days)], seed)[0]


def forecast_targets(tasks: Sequence[RemainingTask], scope: ScopeSnapshot | None, params: ProjectParams, n: int,
                     groups: Sequence[tuple[Sequence[str] | None, float | None]], seed: int = 0
                     ) -> list[CompletionForecast]:
    """`forecast_project` of several (targets, deadline days) groups of one project, e.g. the project
    (targets None) and each open milestone, from ONE simulation of its open tasks."""
    finish = _finish(tasks, params, n, seed)
    return [_summary(completion_runs(finish, tasks, scope, params, seed, targets), params, deadline)
            for targets, deadline in groups]


@dataclass(frozen=True)
class ProjectCase:
    """One validation probe: the project's inputs as of the probe and the truth (days from then)."""

    tasks: tuple[RemainingTask, ...]
    scope: ScopeSnapshot
    deadline_days: float | None
    actual_days: float


@dataclass(frozen=True)
class ParamFit:
    params: ProjectParams
    mae_days: float
    grid: dict[str, float]
    """mean absolute error (days) of every configuration tried, by its JSON"""


CORRELATIONS = (0.0, 0.25, 0.5, 0.75, 0.9)
CREATION_FRACTIONS: tuple[float | None, ...] = (None, 0.5, 0.625, 0.75, 0.875, 1.0)
BLENDS = tuple(round(0.1 * i, 1) for i in range(11))


def fit_project_params(cases: Sequence[ProjectCase], n: int = 400, seed: int = 0,
                       correlations: Sequence[float] = CORRELATIONS,
                       fractions: Sequence[float | None] = CREATION_FRACTIONS,
                       blends: Sequence[float] = BLENDS) -> ParamFit:
    """The grid point with the lowest mean absolute error of the p50 over ``cases`` (ties: the first,
    i.e. the simpler one). The blend is applied to each configuration's simulated p50 (a quantile commutes
    with an increasing affine map), so only correlation x fraction need simulating."""
    if not cases:
        raise ValueError("no validation projects to fit the project parameters on")
    grid: dict[str, float] = {}
    best: tuple[float, ProjectParams] | None = None
    truth = np.asarray([c.actual_days for c in cases])
    for rho in correlations:
        # the creation fraction only changes the future scope: one simulation of the open tasks per case
        finish = [_finish(c.tasks, ProjectParams(rho), n, seed) for c in cases]
        for frac in fractions:
            base = ProjectParams(rho, frac, 1.0)
            p50 = np.asarray([float(np.median(completion_runs(f, c.tasks, c.scope, base, seed)))
                              for c, f in zip(cases, finish, strict=True)])
            deadline = np.asarray([p if c.deadline_days is None else c.deadline_days
                                   for c, p in zip(cases, p50, strict=True)])
            for w in sorted(blends, reverse=True):
                params = ProjectParams(rho, frac, w)
                mae = float(np.mean(np.abs(np.maximum(w * p50 + (1.0 - w) * deadline, 0.0) - truth)))
                grid[params.to_json()] = mae
                if best is None or mae < best[0] - 1e-9:
                    best = (mae, params)
    assert best is not None
    return ParamFit(best[1], best[0], grid)
