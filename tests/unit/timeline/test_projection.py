"""Project forecasts: correlated task speeds, the scope not created yet, the deadline blend, and the
choice of their parameters on validation projects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.timeline.montecarlo import RemainingTask, simulate_completion
from services.timeline.projection import (
    ProjectCase,
    ProjectParams,
    ScopeSnapshot,
    fit_project_params,
    forecast_project,
    future_finish,
    scope_snapshot,
    simulate_runs,
)

Q = (10.0, 40.0, 160.0)  # hours, wide
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def parallel(n: int) -> list[RemainingTask]:
    return [RemainingTask(f"t{i}", None, (), Q) for i in range(n)]


def scope(n_created: int, elapsed: float = 14.0, planned: float | None = 56.0, n_open: int = 10) -> ScopeSnapshot:
    return ScopeSnapshot(elapsed, planned, n_created, np.full(n_created - n_open, 2.0), np.full(n_open, 1.0))


def test_a_shared_speed_factor_lowers_the_max_of_many_tasks_and_widens_its_interval() -> None:
    tasks = parallel(40)
    independent = simulate_completion(tasks, {}, n=4000, seed=3, durations="elapsed")
    shared = simulate_completion(tasks, {}, n=4000, seed=3, durations="elapsed", correlation=0.8)
    # independent draws: the max is set by the tails of 40 tasks -> later, and relatively tight
    assert shared.p50 < 0.5 * independent.p50
    assert shared.p90 / shared.p10 > 2.0 * (independent.p90 / independent.p10)


def test_a_shared_speed_factor_widens_a_chain() -> None:
    chain = [RemainingTask("a", None, (), Q), *(RemainingTask(f"t{i}", "p", (("a",) if i == 0 else (f"t{i - 1}",)), Q)
                                                 for i in range(5))]
    cap = {"p": 8.0}
    independent = simulate_completion(chain, cap, n=4000, seed=1)
    shared = simulate_completion(chain, cap, n=4000, seed=1, correlation=0.9)
    assert shared.p90 - shared.p10 > 1.3 * (independent.p90 - independent.p10)
    assert shared.p90 > independent.p90 and shared.p10 < independent.p10


def test_correlation_keeps_each_tasks_marginal() -> None:
    one = [RemainingTask("a", None, (), Q)]
    f = simulate_completion(one, {}, n=20000, seed=2, durations="elapsed", correlation=0.7)
    assert f.p50 * 24 == pytest.approx(40.0, rel=0.05)
    assert f.p90 * 24 == pytest.approx(160.0, rel=0.07)


def test_correlation_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError):
        simulate_completion(parallel(2), {}, n=10, correlation=1.5)


def test_a_project_still_creating_tasks_finishes_later_than_one_without_future_scope() -> None:
    tasks = parallel(10)
    params = ProjectParams(0.5, 1.0, 1.0)
    busy = simulate_runs(tasks, scope(n_created=40), params, 3000, seed=4)
    closed = simulate_runs(tasks, scope(n_created=40, elapsed=60.0), params, 3000, seed=4)  # window over
    none = simulate_runs(tasks, scope(n_created=40), ProjectParams(0.5, None, 1.0), 3000, seed=4)
    assert np.median(busy) > np.median(closed) + 20.0  # ~42 days of creation left, tasks take days
    assert np.all(busy >= closed - 1e-12)  # same draws for the open tasks; the future only adds
    np.testing.assert_allclose(closed, none)  # past the window: exactly the open tasks


def test_a_faster_creation_rate_implies_a_later_finish() -> None:
    tasks = parallel(5)
    params = ProjectParams(0.0, 1.0, 1.0)
    slow = simulate_runs(tasks, scope(n_created=12, n_open=5), params, 3000, seed=5)
    fast = simulate_runs(tasks, scope(n_created=60, n_open=5), params, 3000, seed=5)
    assert np.median(fast) > np.median(slow)


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([a, b]))
    return float(np.max(np.abs(np.searchsorted(np.sort(a), grid, "right") / a.size
                                - np.searchsorted(np.sort(b), grid, "right") / b.size)))


def _future_task_by_task(s: ScopeSnapshot, open_finish: np.ndarray, fraction: float, rng: np.random.Generator
                         ) -> np.ndarray:
    """The model drawn literally (the sampler before the Poisson-splitting one): each run's count of new tasks,
    then each task's creation time and duration from the pool; the latest finish."""
    n, left = open_finish.shape[0], s.creation_days_left(fraction)
    rate = rng.gamma(s.n_created + 0.5, 1.0 / max(s.elapsed_days, 7.0), size=n)
    out = np.zeros(n)
    counts: list[int] = np.asarray(rng.poisson(rate * left)).tolist()
    for r, count in enumerate(counts):
        pool = np.concatenate([s.done_days, open_finish[r] + s.open_age_days])
        if count:
            out[r] = (rng.uniform(0.0, left, count) + pool[rng.integers(0, pool.size, count)]).max()
    return out


@pytest.mark.parametrize(("n_created", "elapsed", "planned", "done", "opened"), [
    (40, 10.0, 30.0, 10, 5),  # tens of new tasks
    (200, 3.0, 40.0, 30, 60),  # hundreds, a big pool
    (12, 20.0, 25.0, 8, 4),  # often none: runs at 0
    (5, 1.0, 60.0, 0, 3),  # only open tasks in the pool
    (120, 30.0, 90.0, 100, 0),  # only done ones (drawn longest first, pruned)
])
def test_the_latest_new_task_is_drawn_as_the_task_by_task_model_would(n_created: int, elapsed: float,
                                                                      planned: float, done: int,
                                                                      opened: int) -> None:
    rng = np.random.default_rng(n_created)
    s = ScopeSnapshot(elapsed, planned, n_created, rng.gamma(2.0, 2.0, done), rng.uniform(0.0, 5.0, opened))
    open_finish = rng.lognormal(0.5, 0.6, size=(4000, opened))
    fast = future_finish(s, open_finish, 1.0, np.random.default_rng(1))
    slow = _future_task_by_task(s, open_finish, 1.0, np.random.default_rng(2))
    assert _ks(fast, slow) < 1.63 * np.sqrt(2 / 4000)  # one distribution at the 1% level (fixed seeds: not flaky)
    assert np.mean(fast == 0.0) == pytest.approx(np.mean(slow == 0.0), abs=0.02)
    np.testing.assert_allclose(np.quantile(fast, [0.1, 0.5, 0.9]), np.quantile(slow, [0.1, 0.5, 0.9]), rtol=0.03)


def test_no_future_scope_without_a_planned_duration_or_past_the_creation_window() -> None:
    assert scope(20, planned=None).creation_days_left(1.0) == 0.0
    assert scope(20, elapsed=50.0).creation_days_left(0.75) == 0.0
    assert scope(20, elapsed=14.0).creation_days_left(0.75) == pytest.approx(0.75 * 56 - 14)


def test_scope_snapshot_from_times() -> None:
    created = [T0, T0 + timedelta(days=1), T0 + timedelta(days=2)]
    s = scope_snapshot(T0, T0 + timedelta(days=28), created, [(created[0], T0 + timedelta(days=3))],
                       created[1:], T0 + timedelta(days=7))
    assert (s.elapsed_days, s.planned_days, s.n_created) == (7.0, 28.0, 3)
    assert s.done_days.tolist() == [3.0] and s.open_age_days.tolist() == [6.0, 5.0]


def test_blend_moves_the_forecast_towards_the_deadline_but_not_the_miss_probability() -> None:
    tasks = parallel(8)
    sim_only = forecast_project(tasks, None, ProjectParams(0.5, None, 1.0), 3000, deadline_days=30.0, seed=6)
    half = forecast_project(tasks, None, ProjectParams(0.5, None, 0.5), 3000, deadline_days=30.0, seed=6)
    assert half.p50 == pytest.approx(0.5 * sim_only.p50 + 0.5 * 30.0, rel=1e-6)
    assert half.p_miss_deadline == sim_only.p_miss_deadline


def test_fit_picks_the_deadline_when_the_truth_is_the_deadline_and_the_simulation_otherwise() -> None:
    tasks = tuple(parallel(4))
    s = scope(10, elapsed=100.0)  # no future scope
    runs = simulate_runs(tasks, s, ProjectParams(0.0, None, 1.0), 400, seed=0)
    on_deadline = [ProjectCase(tasks, s, 50.0, 50.0) for _ in range(3)]
    assert fit_project_params(on_deadline, correlations=(0.0,), fractions=(None,)).params.blend == 0.0
    on_sim = [ProjectCase(tasks, s, 50.0, float(np.median(runs))) for _ in range(3)]
    fit = fit_project_params(on_sim, correlations=(0.0,), fractions=(None,))
    assert fit.params.blend == 1.0 and fit.mae_days < 0.01
    with pytest.raises(ValueError):
        fit_project_params([])


def test_params_round_trip_and_validate() -> None:
    p = ProjectParams(0.25, 0.75, 0.6)
    assert ProjectParams.from_json(p.to_json()) == p
    with pytest.raises(ValueError):
        ProjectParams(blend=1.2)


def test_one_simulation_gives_the_project_and_each_milestone_the_forecast_of_a_separate_run() -> None:
    from services.timeline.projection import forecast_targets

    tasks = [RemainingTask("a", None, (), Q), RemainingTask("b", None, ("a",), Q), RemainingTask("c", None, (), Q)]
    params = ProjectParams(0.5, 1.0, 0.8)
    s = scope(n_created=12, n_open=3)
    groups: list[tuple[list[str] | None, float | None]] = [(None, 20.0), (["a", "b"], 3.0), (["c"], None)]
    together = forecast_targets(tasks, s, params, 2000, groups, seed=9)
    for (targets, deadline), got in zip(groups, together, strict=True):
        alone = forecast_project(tasks, s if targets is None else None, params, 2000, deadline_days=deadline,
                                 seed=9, targets=targets)
        assert (got.p10, got.p50, got.p90, got.p_miss_deadline) == (alone.p10, alone.p50, alone.p90,
                                                                    alone.p_miss_deadline)
    assert together[1].p50 <= together[0].p50  # a milestone is a subset of the same runs: never later
