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


def _reference_finish(tasks: list[RemainingTask], capacity: dict[str, float], n: int, seed: int, elapsed: bool,
                      correlation: float) -> np.ndarray:
    """The schedule written task by task (the definition the vectorised one must reproduce exactly)."""
    order = topological_order(tasks)
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(n) if correlation > 0.0 else None
    index = {t.id: i for i, t in enumerate(tasks)}
    finish = np.zeros((n, len(tasks)))
    free_at: dict[str, np.ndarray] = {}
    for i in order:
        t = tasks[i]
        assert t.quantiles is not None
        mu, sigma = lognormal_from_quantiles(*t.quantiles)
        z = rng.standard_normal(n)
        if shared is not None:
            z = np.sqrt(correlation) * shared + np.sqrt(1.0 - correlation) * z
        work = np.exp(mu + sigma * z)
        start = np.zeros(n)
        for dep in t.depends_on:
            if dep in index:
                start = np.maximum(start, finish[:, index[dep]])
        if elapsed:
            finish[:, i] = np.maximum(start, work / 24.0)
            continue
        if t.assignee is not None:
            start = np.maximum(start, free_at.get(t.assignee, np.zeros(n)))
        finish[:, i] = start + work / capacity.get(t.assignee or "", 6.0)
        if t.assignee is not None:
            free_at[t.assignee] = finish[:, i]
    return finish


@pytest.mark.parametrize("durations", ["work", "elapsed"])
@pytest.mark.parametrize("correlation", [0.0, 0.6])
def test_the_vectorised_schedule_is_the_task_by_task_one(durations: str, correlation: float) -> None:
    # A shuffled DAG with shared assignees, unassigned tasks and a dependency outside the list.
    rng = np.random.default_rng(7)
    tasks = []
    for i in range(60):
        deps = tuple(f"t{j}" for j in rng.choice(i, size=min(i, int(rng.integers(0, 3))), replace=False))
        p50 = float(rng.uniform(2.0, 40.0))
        who = None if rng.random() < 0.3 else f"p{rng.integers(0, 4)}"
        tasks.append(RemainingTask(f"t{i}", who, (*deps, "gone") if i == 5 else deps, (p50 / 3, p50, 3 * p50)))
    tasks = [tasks[k] for k in rng.permutation(len(tasks))]
    cap = {f"p{k}": 4.0 + k for k in range(4)}
    got = simulate_finish_times(tasks, cap, n=300, seed=3, durations=durations,  # type: ignore[arg-type]
                                correlation=correlation)
    want = _reference_finish(tasks, cap, 300, 3, durations == "elapsed", correlation)
    np.testing.assert_array_equal(got, want)


def test_sample_given_tasks_resample_their_own_pool() -> None:
    tasks = [RemainingTask("A", None, (), samples=np.array([1.0, 2.0])),
             RemainingTask("B", None, (), samples=np.array([24.0 * 5])),
             RemainingTask("C", None, (), Q)]
    finish = simulate_finish_times(tasks, {}, n=2000, seed=0, durations="elapsed")
    assert set(np.unique(finish[:, 0] * 24.0)) == {1.0, 2.0}
    assert np.all(finish[:, 1] == 5.0)
    with pytest.raises(ValueError, match="empty samples"):
        simulate_finish_times([RemainingTask("A", None, (), samples=np.array([]))], {}, n=10)
