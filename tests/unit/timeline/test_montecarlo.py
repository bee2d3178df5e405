from __future__ import annotations

import numpy as np
import pytest

from services.timeline.montecarlo import (
    DependencyCycleError,
    RemainingTask,
    lognormal_from_quantiles,
    simulate_completion,
    simulate_finish_times,
    topological_order,
)

Q = (4.0, 8.0, 16.0)  # hours


def test_chain_finishes_no_earlier_than_the_sum_of_its_tasks() -> None:
    # Three people, so only the dependencies can serialise the chain.
    tasks = [
        RemainingTask("C", "carol", ("B",), Q),
        RemainingTask("A", "alice", (), Q),
        RemainingTask("B", "bob", ("A",), Q),
    ]
    cap = {"alice": 8.0, "bob": 8.0, "carol": 8.0}
    finish = simulate_finish_times(tasks, cap, n=5000, seed=1)
    a, b, c = finish[:, 1], finish[:, 2], finish[:, 0]
    assert np.all(b >= a) and np.all(c >= b)
    chain = simulate_completion(tasks, cap, n=5000, seed=1)
    single = simulate_completion([RemainingTask("A", "alice", (), Q)], cap, n=5000, seed=1)
    assert chain.p50 > 2.5 * single.p50


def test_chain_completion_is_exactly_the_sum_with_fixed_durations() -> None:
    tasks = [
        RemainingTask("A", "p1", (), samples=np.array([8.0])),
        RemainingTask("B", "p2", ("A",), samples=np.array([16.0])),
        RemainingTask("C", "p3", ("B",), samples=np.array([4.0])),
    ]
    out = simulate_completion(tasks, {"p1": 8.0, "p2": 8.0, "p3": 4.0}, n=100)
    assert out.p10 == pytest.approx(1.0 + 2.0 + 1.0)
    assert out.p90 == pytest.approx(4.0)


def test_parallel_tasks_finish_sooner_with_two_people_than_one() -> None:
    one = [RemainingTask("A", "ann", (), Q), RemainingTask("B", "ann", (), Q)]
    two = [RemainingTask("A", "ann", (), Q), RemainingTask("B", "ben", (), Q)]
    cap = {"ann": 6.0, "ben": 6.0}
    solo = simulate_completion(one, cap, n=5000, seed=2)
    pair = simulate_completion(two, cap, n=5000, seed=2)
    assert pair.p50 < solo.p50
    assert pair.p90 < solo.p90
    assert np.all(pair.samples <= solo.samples + 1e-12)  # same draws: max(a, b) <= a + b


def test_deadline_probability_and_targets() -> None:
    tasks = [
        RemainingTask("A", "ann", (), samples=np.array([8.0])),
        RemainingTask("B", "ann", (), samples=np.array([8.0, 80.0])),
    ]
    cap = {"ann": 8.0}
    milestone = simulate_completion(tasks, cap, n=4000, deadline_days=1.5, targets=["A"], seed=0)
    assert milestone.p_miss_deadline == 0.0
    project = simulate_completion(tasks, cap, n=4000, deadline_days=5.0, seed=0)
    assert project.p_miss_deadline == pytest.approx(0.5, abs=0.05)
    with pytest.raises(ValueError, match="unknown target"):
        simulate_completion(tasks, cap, targets=["Z"])


def test_cycle_is_detected_and_named() -> None:
    tasks = [
        RemainingTask("A", None, ("C",), Q),
        RemainingTask("B", None, ("A",), Q),
        RemainingTask("C", None, ("B",), Q),
        RemainingTask("D", None, (), Q),
    ]
    with pytest.raises(DependencyCycleError) as err:
        simulate_completion(tasks, {})
    assert set(err.value.cycle) == {"A", "B", "C"}
    assert err.value.cycle[0] == err.value.cycle[-1]
    assert "dependency cycle" in str(err.value)


def test_self_dependency_is_a_cycle() -> None:
    with pytest.raises(DependencyCycleError):
        topological_order([RemainingTask("A", None, ("A",), Q)])


def test_dependency_on_a_task_not_listed_counts_as_done() -> None:
    order = topological_order([RemainingTask("B", None, ("done-already",), Q), RemainingTask("A")])
    assert order == [0, 1]


def test_lognormal_fit_reproduces_the_quantiles() -> None:
    mu, sigma = lognormal_from_quantiles(*Q)
    draws = np.exp(mu + sigma * np.random.default_rng(0).standard_normal(200_000))
    assert np.quantile(draws, [0.1, 0.5, 0.9]) == pytest.approx(Q, rel=0.02)
    with pytest.raises(ValueError):
        lognormal_from_quantiles(5.0, 4.0, 6.0)
