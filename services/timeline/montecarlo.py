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
    """n samples of one task's remaining work in hours (non-negative); see `sample_all`."""
    return sample_all([task], n, rng, shared, correlation)[:, 0]


def sample_all(tasks: Sequence[RemainingTask], n: int, rng: np.random.Generator, shared: FloatArray | None = None,
               correlation: float = 0.0) -> FloatArray:
    """[n, len(tasks)] samples of every task's remaining work in hours (non-negative); see `sample_rows`."""
    return sample_rows(tasks, n, rng, shared, correlation).T


def sample_rows(tasks: Sequence[RemainingTask], n: int, rng: np.random.Generator, shared: FloatArray | None = None,
                correlation: float = 0.0) -> FloatArray:
    """[len(tasks), n] samples of every task's remaining work in hours (non-negative), one draw per kind.

    Quantile-given tasks are log-normal: row k's noise is the k-th block of one ``standard_normal`` call
    (so a single task draws exactly what a per-task call would). With ``shared`` (one standard-normal draw
    per simulation, common to every task of the run) and ``correlation`` rho > 0, the noise is
    sqrt(rho) * shared + sqrt(1 - rho) * own: the tasks of one simulation are then all fast or all slow
    together (a project/team speed factor), each keeping its own marginal distribution. Sample-given tasks
    are resampled with replacement, independently of each other and of ``shared``."""
    out = np.empty((len(tasks), n))
    given = [i for i, t in enumerate(tasks) if t.samples is not None]
    fitted = [i for i, t in enumerate(tasks) if t.samples is None]
    if fitted:
        mu, sigma = _lognormal_params([tasks[i] for i in fitted])
        rows = rng.standard_normal((len(fitted), n))
        # in place: [tasks, n] temporaries would cost more than the arithmetic
        if shared is not None and correlation > 0.0:
            rows *= np.sqrt(1.0 - correlation)
            rows += np.sqrt(correlation) * shared[None, :]
        rows *= sigma[:, None]
        rows += mu[:, None]
        np.exp(rows, out=rows)
        if len(fitted) == len(tasks):
            return rows
        out[fitted] = rows
    if given:
        pools = [np.asarray(tasks[i].samples, dtype=np.float64).ravel() for i in given]
        for i, pool in zip(given, pools, strict=True):
            if pool.size == 0:
                raise ValueError(f"task {tasks[i].id}: empty samples")
        sizes = np.asarray([p.size for p in pools])
        padded = np.zeros((len(pools), int(sizes.max())))
        for row, pool in enumerate(pools):
            padded[row, : pool.size] = pool
        pick = (rng.random((len(pools), n)) * sizes[:, None]).astype(np.intp)  # uniform index into each pool
        out[given] = np.maximum(np.take_along_axis(padded, pick, axis=1), 0.0)
    return out


def _lognormal_params(tasks: Sequence[RemainingTask]) -> tuple[FloatArray, FloatArray]:
    """(mu, sigma) rows of the quantile-given ``tasks`` (`lognormal_from_quantiles`, vectorised)."""
    for t in tasks:
        if t.quantiles is None:
            raise ValueError(f"task {t.id}: give samples or quantiles")
    q = np.asarray([t.quantiles for t in tasks], dtype=np.float64).reshape(len(tasks), 3)
    bad = ~((q[:, 0] > 0.0) & (q[:, 0] <= q[:, 1]) & (q[:, 1] <= q[:, 2]))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"task {tasks[i].id}: need 0 < p10 <= p50 <= p90, got {tuple(q[i])}")
    log_q = np.log(q)
    return log_q[:, 1], (log_q[:, 2] - log_q[:, 0]) / (2.0 * Z90)


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
    `sample_all`; 0 = independent tasks).

    Vectorised over simulations and tasks: every task's work is drawn in one call, then the schedule is
    filled one dependency *level* at a time (all tasks whose predecessors are already placed, as one numpy
    operation over [n, tasks of the level]); the Python loop runs over levels, never over simulations."""
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be within [0, 1], got {correlation}")
    order = topological_order(tasks)
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal(n) if correlation > 0.0 else None
    ranked = [tasks[i] for i in order]  # draws in topological order: the random stream of a task-by-task loop
    if order == list(range(len(tasks))):  # already in dependency order (the common case): no scatter copy
        work = sample_rows(ranked, n, rng, shared, correlation)
    else:
        work = np.empty((len(tasks), n))
        work[order] = sample_rows(ranked, n, rng, shared, correlation)
    index = {t.id: i for i, t in enumerate(tasks)}
    preds = [[index[d] for d in t.depends_on if d in index] for t in tasks]
    if durations == "elapsed":
        work /= 24.0
        return _longest_paths(preds, order, work, elapsed=True).T
    work /= np.asarray([_rate(t, capacity, default_capacity) for t in tasks])[:, None]
    last: dict[str, int] = {}
    for i in order:  # one person works on one task at a time: their previous task is a predecessor too
        who = tasks[i].assignee
        if who is not None:
            if who in last:
                preds[i] = [*preds[i], last[who]]
            last[who] = i
    return _longest_paths(preds, order, work, elapsed=False).T


def _rate(task: RemainingTask, capacity: Mapping[str, float], default: float) -> float:
    rate = capacity.get(task.assignee, default) if task.assignee else default
    if rate <= 0:
        raise ValueError(f"capacity of {task.assignee!r} must be positive, got {rate}")
    return float(rate)


def _longest_paths(preds: list[list[int]], order: list[int], own: FloatArray, *, elapsed: bool) -> FloatArray:
    """[tasks, n] finish times: a task starts when its last predecessor finished (0 without any) and then
    takes ``own`` [tasks, n] (``elapsed``: finishes at max(start, own) instead of start + own). Task-major,
    so gathering the predecessors of a level reads whole rows."""
    count, n = own.shape
    level = [0] * count
    for i in order:
        level[i] = 1 + max((level[p] for p in preds[i]), default=-1)
    if not any(level):  # no dependencies at all: every task runs from now
        return own
    finish = np.zeros((count + 1, n))  # the extra zero row stands for "no predecessor"
    by_level: dict[int, list[int]] = {}
    for i in order:
        by_level.setdefault(level[i], []).append(i)
    for depth in sorted(by_level):
        ix = by_level[depth]
        width = max(len(preds[i]) for i in ix)
        if width == 0:
            finish[ix] = own[ix]
            continue
        before = np.full((len(ix), width), count, dtype=np.intp)
        for row, i in enumerate(ix):
            before[row, : len(preds[i])] = preds[i]
        start = finish[before].max(axis=1)  # [level tasks, n]
        finish[ix] = np.maximum(start, own[ix]) if elapsed else start + own[ix]
    return finish[:count]


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
