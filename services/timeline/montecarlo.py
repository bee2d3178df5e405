"""Monte-Carlo completion of a project or milestone from its remaining tasks.

Each task's remaining work (hours) is sampled N times, from given samples or from a log-normal fitted
to (p10, p50, p90). Tasks are then scheduled in every simulation at once (numpy vectors of length N):
a task starts when all its predecessors have finished and its assignee is free; one person works on one
task at a time, `capacity[person]` hours per day. Tasks without an assignee run in parallel at
`default_capacity`. Each person takes their tasks in a fixed dependency-respecting order (a stable
topological order of the input), so the schedule is a plausible plan, not an optimal one.

Times are in days from now. A dependency on a task that is not in the list counts as already done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Durations = Literal["work", "elapsed"]
"""`work`: samples are hours of work, done at the assignee's capacity after the predecessors finish.
`elapsed`: samples are wall-clock hours from now until the task is done (they already include queues and
waiting); a task then finishes at max(its own sample, its predecessors' finish), capacity unused."""
Z90 = 1.2815515655446004  # standard normal quantile at 0.9


class DependencyCycleError(ValueError):
    """The dependencies contain a cycle, so no task in it could ever start. Not retryable."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__("dependency cycle: " + " -> ".join(self.cycle))


@dataclass(frozen=True)
class RemainingTask:
    """One open task: its remaining work either as samples (hours) or as (p10, p50, p90) hours."""

    id: str
    assignee: str | None = None
    """who does it; None = unassigned (not limited by anyone's capacity)"""
    depends_on: tuple[str, ...] = ()
    """ids of tasks that must finish first"""
    quantiles: tuple[float, float, float] | None = None
    """(p10, p50, p90) of remaining work in hours; a log-normal is fitted to them"""
    samples: Any = None
    """1-D array of remaining-work samples in hours (resampled with replacement); wins over quantiles"""


@dataclass(frozen=True)
class CompletionForecast:
    """Distribution of the completion time (days from now) of a set of tasks."""

    p10: float
    p50: float
    p90: float
    p_miss_deadline: float | None
    """P(completion > deadline), if a deadline was given"""
    samples: FloatArray


def lognormal_from_quantiles(p10: float, p50: float, p90: float) -> tuple[float, float]:
    """(mu, sigma) of a log-normal with median p50 and a log-space spread matching p10..p90."""
    if not 0.0 < p10 <= p50 <= p90:
        raise ValueError(f"need 0 < p10 <= p50 <= p90, got {(p10, p50, p90)}")
    return float(np.log(p50)), float((np.log(p90) - np.log(p10)) / (2.0 * Z90))


def sample_work(task: RemainingTask, n: int, rng: np.random.Generator, shared: FloatArray | None = None,
                correlation: float = 0.0) -> FloatArray:
    """n samples of the task's remaining work in hours (non-negative).

    With ``shared`` (one standard-normal draw per simulation, common to every task of the run) and
    ``correlation`` rho > 0, a quantile-given task's log-normal noise is sqrt(rho) * shared + sqrt(1 - rho) *
    own: the tasks of one simulation are then all fast or all slow together (a project/team speed factor),
    each keeping its own marginal distribution. Sample-given tasks are drawn independently."""
    if task.samples is not None:
        pool = np.asarray(task.samples, dtype=np.float64).ravel()
        if pool.size == 0:
            raise ValueError(f"task {task.id}: empty samples")
        return np.maximum(np.asarray(rng.choice(pool, size=n, replace=True), dtype=np.float64), 0.0)
    if task.quantiles is None:
        raise ValueError(f"task {task.id}: give samples or quantiles")
    mu, sigma = lognormal_from_quantiles(*task.quantiles)
    z = rng.standard_normal(n)
    if shared is not None and correlation > 0.0:
        z = np.sqrt(correlation) * shared + np.sqrt(1.0 - correlation) * z
    return np.asarray(np.exp(mu + sigma * z), dtype=np.float64)


def topological_order(tasks: Sequence[RemainingTask]) -> list[int]:
    """Indices of `tasks` with every task after its predecessors (input order kept where free).

    Raises `DependencyCycleError` naming one cycle; duplicate ids raise `ValueError`.
    """
    index = {t.id: i for i, t in enumerate(tasks)}
    if len(index) != len(tasks):
        raise ValueError("duplicate task ids")
    preds = [[index[d] for d in t.depends_on if d in index] for t in tasks]
    order: list[int] = []
    placed = [False] * len(tasks)
    progress = True
    while progress and len(order) < len(tasks):
        progress = False
        for i in range(len(tasks)):
            if not placed[i] and all(placed[p] for p in preds[i]):
                placed[i], progress = True, True
                order.append(i)
    if len(order) < len(tasks):
        raise DependencyCycleError(_find_cycle(tasks, preds, placed))
    return order


def _find_cycle(tasks: Sequence[RemainingTask], preds: list[list[int]], placed: list[bool]) -> list[str]:
    # Every unplaced task has an unplaced predecessor: walking back must revisit a node.
    node = placed.index(False)
    seen: dict[int, int] = {}
    path: list[int] = []
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in preds[node] if not placed[p])
    cycle = path[seen[node]:][::-1]
    return [tasks[i].id for i in [*cycle, cycle[0]]]


def simulate_finish_times(
    tasks: Sequence[RemainingTask],
    capacity: Mapping[str, float],
    n: int = 10_000,
    default_capacity: float = 6.0,
    seed: int = 0,
    durations: Durations = "work",
    correlation: float = 0.0,
) -> FloatArray:
    """[n, len(tasks)] finish times in days from now, one row per simulation (``correlation``: see
    `sample_work`; 0 = independent tasks)."""
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be within [0, 1], got {correlation}")
    order = topological_order(tasks)
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(n) if correlation > 0.0 else None
    index = {t.id: i for i, t in enumerate(tasks)}
    finish = np.zeros((n, len(tasks)))
    free_at: dict[str, FloatArray] = {}
    for i in order:
        task = tasks[i]
        start = np.zeros(n)
        for dep in task.depends_on:
            if dep in index:
                start = np.maximum(start, finish[:, index[dep]])
        if durations == "elapsed":
            finish[:, i] = np.maximum(start, sample_work(task, n, rng, shared, correlation) / 24.0)
            continue
        rate = capacity.get(task.assignee, default_capacity) if task.assignee else default_capacity
        if rate <= 0:
            raise ValueError(f"capacity of {task.assignee!r} must be positive, got {rate}")
        if task.assignee is not None:
            start = np.maximum(start, free_at.get(task.assignee, np.zeros(n)))
        finish[:, i] = start + sample_work(task, n, rng, shared, correlation) / rate
        if task.assignee is not None:
            free_at[task.assignee] = finish[:, i]
    return finish


def simulate_completion(
    tasks: Sequence[RemainingTask],
    capacity: Mapping[str, float],
    n: int = 10_000,
    deadline_days: float | None = None,
    targets: Sequence[str] | None = None,
    default_capacity: float = 6.0,
    seed: int = 0,
    durations: Durations = "work",
    correlation: float = 0.0,
) -> CompletionForecast:
    """Completion-time distribution of `targets` (default: all tasks; e.g. a milestone's tasks).

    `capacity` maps a person to hours of work per day. Returns p10/p50/p90 in days from now and, if
    `deadline_days` is given, the probability of finishing after it.
    """
    if not tasks:
        done = np.zeros(n)
        return CompletionForecast(0.0, 0.0, 0.0, 0.0 if deadline_days is not None else None, done)
    finish = simulate_finish_times(tasks, capacity, n, default_capacity, seed, durations, correlation)
    ids = [t.id for t in tasks]
    unknown = set(targets or ()) - set(ids)
    if unknown:
        raise ValueError(f"unknown target tasks: {sorted(unknown)}")
    cols = [ids.index(t) for t in targets] if targets else list(range(len(ids)))
    completion = finish[:, cols].max(axis=1)
    p10, p50, p90 = (float(v) for v in np.quantile(completion, [0.1, 0.5, 0.9]))
    miss = None if deadline_days is None else float(np.mean(completion > deadline_days))
    return CompletionForecast(p10, p50, p90, miss, completion)
