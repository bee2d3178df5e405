"""Off-policy evaluation: the value of an evaluation policy estimated from another policy's logs.

A log holds, per round ``i``: the action shown ``a_i`` at slot (position) ``k_i``, its reward ``r_i`` and
the logging policy's propensity ``p_i = pi_b(a_i | x_i, k_i) > 0``. The evaluation policy is given as its
action distribution per round and slot, ``pi_e[i, a, k]`` (each ``pi_e[i, :, k]`` sums to 1), and the
model-based estimators take a reward model's predictions ``q[i, a, k]`` (estimated E[r | x_i, a, k]).

- DM (direct method): mean_i sum_a pi_e(a) q(a); biased when the reward model is, low variance.
- IPW (inverse propensity weighting): mean_i w_i r_i with w_i = pi_e(a_i) / p_i; unbiased, high variance.
- SNIPS (self-normalised IPW): sum_i w_i r_i / sum_i w_i; a little bias, much less variance.
- DR (doubly robust): DM_i + w_i (r_i - q(a_i)); unbiased when the propensities are right, with the
  variance of IPW reduced by the reward model.
- SNDR: DR with the correction self-normalised (divided by mean_i w_i).
- Switch-DR(tau): DM_i + 1{w_i <= tau} w_i (r_i - q(a_i)): the correction only where the weight is small
  (tau = inf is DR, tau = 0 is DM). Wang, Agarwal, Dudik, "Optimal and Adaptive Off-policy Evaluation in
  Contextual Bandits" (ICML 2017).
- DR-os(lambda) (optimistic shrinkage): DM_i + w'_i (r_i - q(a_i)) with w' = lambda w / (w^2 + lambda)
  (lambda = inf is DR, lambda = 0 is DM). Su, Dimakopoulou, Krishnamurthy, Dudik, "Doubly Robust
  Off-policy Evaluation with Shrinkage" (ICML 2020).
  The hyper-parameter of both is chosen from the logs alone by SLOPE (Su, Srinath, Krishnamurthy,
  "Adaptive Estimator Selection for Off-Policy Evaluation", ICML 2020; the variant the ``obp`` package
  ships): candidates ordered from the widest confidence interval (least bias) to the narrowest, the last
  one whose estimate stays within ``w_i + (sqrt(6) - 1) w_j`` of every wider candidate ``j``.

References: Dudik, Langford, Li, "Doubly Robust Policy Evaluation and Learning" (ICML 2011); Swaminathan
and Joachims, "The Self-Normalized Estimator for Counterfactual Learning" (NeurIPS 2015). The ``obp``
package implements the same estimators; it is not needed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Estimator = Literal["dm", "ipw", "snips", "dr", "sndr", "switch-dr", "dr-os"]
ESTIMATORS: tuple[Estimator, ...] = ("dm", "ipw", "snips", "dr", "sndr", "switch-dr", "dr-os")
TUNED: tuple[Estimator, ...] = ("switch-dr", "dr-os")
"""Estimators with a hyper-parameter (chosen by :func:`slope` over :data:`DEFAULT_GRID`)."""
DEFAULT_GRID: dict[Estimator, tuple[float, ...]] = {
    "switch-dr": (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, float("inf")),
    "dr-os": (0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, float("inf")),
}


@dataclass(frozen=True)
class BanditLog:
    """Logged rounds of a (slate) bandit: one row per shown item."""

    actions: IntArray
    """Action (item index) shown, shape (n,)."""
    positions: IntArray
    """Slot index in 0..n_positions-1, shape (n,)."""
    rewards: Array
    """Observed reward (click = 1), shape (n,)."""
    pscore: Array
    """Logging policy's propensity of the shown action at its slot, shape (n,), all > 0."""

    def __post_init__(self) -> None:
        n = self.actions.shape[0]
        if not (self.positions.shape == self.rewards.shape == self.pscore.shape == (n,)):
            raise ValueError("actions, positions, rewards and pscore must be 1-d of the same length")
        if n == 0:
            raise ValueError("an empty log has no value to estimate")
        if not np.all(self.pscore > 0):
            raise ValueError("every logged propensity must be > 0 (a deterministic logger cannot be evaluated)")

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    def take(self, rows: IntArray) -> BanditLog:
        """The log restricted to (or resampled at) ``rows``."""
        return BanditLog(self.actions[rows], self.positions[rows], self.rewards[rows], self.pscore[rows])


def _check(log: BanditLog, action_dist: Array, q: Array | None) -> None:
    if action_dist.ndim != 3 or action_dist.shape[0] != len(log):
        raise ValueError(f"action_dist must be (n_rounds, n_actions, n_positions), got {action_dist.shape}")
    sums = action_dist.sum(axis=1)
    if not np.allclose(sums, 1.0, atol=1e-6):
        raise ValueError("each action_dist[i, :, k] must sum to 1")
    if q is not None and q.shape != action_dist.shape:
        raise ValueError(f"reward model predictions {q.shape} must match action_dist {action_dist.shape}")


def _logged(matrix: Array, log: BanditLog) -> Array:
    rows = np.arange(len(log))
    out: Array = matrix[rows, log.actions, log.positions]
    return out


def importance_weights(log: BanditLog, action_dist: Array) -> Array:
    """w_i = pi_e(a_i | x_i, k_i) / p_i."""
    _check(log, action_dist, None)
    return _logged(action_dist, log) / log.pscore


def direct_method(log: BanditLog, action_dist: Array, q: Array) -> float:
    _check(log, action_dist, q)
    per_round = (action_dist * q).sum(axis=1)
    return float(per_round[np.arange(len(log)), log.positions].mean())


def ipw(log: BanditLog, action_dist: Array) -> float:
    return float((importance_weights(log, action_dist) * log.rewards).mean())


def snips(log: BanditLog, action_dist: Array) -> float:
    w = importance_weights(log, action_dist)
    total = float(w.sum())
    return float((w * log.rewards).sum() / total) if total > 0 else 0.0


def doubly_robust(log: BanditLog, action_dist: Array, q: Array) -> float:
    _check(log, action_dist, q)
    w = importance_weights(log, action_dist)
    baseline = (action_dist * q).sum(axis=1)[np.arange(len(log)), log.positions]
    return float((baseline + w * (log.rewards - _logged(q, log))).mean())


def _dm_and_residual(log: BanditLog, action_dist: Array, q: Array) -> tuple[Array, Array, Array]:
    """(DM per round, importance weight, reward residual of the logged action) per round."""
    _check(log, action_dist, q)
    w = importance_weights(log, action_dist)
    baseline = (action_dist * q).sum(axis=1)[np.arange(len(log)), log.positions]
    return baseline, w, log.rewards - _logged(q, log)


def sndr(log: BanditLog, action_dist: Array, q: Array) -> float:
    baseline, w, residual = _dm_and_residual(log, action_dist, q)
    mean_w = float(w.mean())
    correction = float((w * residual).mean()) / mean_w if mean_w > 0 else 0.0
    return float(baseline.mean()) + correction


def switch_round_rewards(log: BanditLog, action_dist: Array, q: Array, tau: float) -> Array:
    """Switch-DR's per-round terms (their mean is the estimate)."""
    baseline, w, residual = _dm_and_residual(log, action_dist, q)
    out: Array = baseline + np.where(w <= tau, w * residual, 0.0)
    return out


def dr_os_round_rewards(log: BanditLog, action_dist: Array, q: Array, lam: float) -> Array:
    """DR-os's per-round terms (their mean is the estimate)."""
    baseline, w, residual = _dm_and_residual(log, action_dist, q)
    if np.isinf(lam):
        shrunk = w
    elif lam <= 0:
        shrunk = np.zeros_like(w)
    else:
        shrunk = lam * w / (w**2 + lam)
    out: Array = baseline + shrunk * residual
    return out


def _half_width(terms: Array, delta: float) -> float:
    """Student-t one-sided ``1 - delta`` half width of the mean of ``terms``."""
    from scipy import stats  # type: ignore[import-untyped]

    n = len(terms)
    if n < 2:
        return float("inf")
    return float(stats.t.ppf(1 - delta, n - 1) * terms.std(ddof=1) / np.sqrt(n))


def slope(candidates: Sequence[Array], delta: float = 0.05) -> int:
    """SLOPE: the index of the chosen candidate given each candidate's per-round terms (see the module doc)."""
    if not candidates:
        raise ValueError("SLOPE needs at least one candidate")
    theta = [float(t.mean()) for t in candidates]
    width = [_half_width(t, delta) for t in candidates]
    order = sorted(range(len(candidates)), key=lambda i: -width[i])
    kept: list[int] = []
    c = np.sqrt(6) - 1
    for i in order:
        if all(abs(theta[j] - theta[i]) <= width[i] + c * width[j] for j in kept):
            kept.append(i)
        else:
            break
    return kept[-1]


def tuned(name: Estimator, log: BanditLog, action_dist: Array, q: Array,
          grid: Sequence[float] | None = None) -> tuple[float, float]:
    """(estimate, chosen hyper-parameter) of Switch-DR or DR-os, the hyper-parameter chosen by SLOPE."""
    rounds = {"switch-dr": switch_round_rewards, "dr-os": dr_os_round_rewards}.get(name)
    if rounds is None:
        raise ValueError(f"{name} has no hyper-parameter to tune")
    values = tuple(grid if grid is not None else DEFAULT_GRID[name])
    terms = [rounds(log, action_dist, q, v) for v in values]
    best = slope(terms)
    return float(terms[best].mean()), values[best]


def estimate(name: Estimator, log: BanditLog, action_dist: Array, q: Array | None = None) -> float:
    """The value of the policy ``action_dist`` by estimator ``name`` (all but IPW and SNIPS need ``q``)."""
    if name == "ipw":
        return ipw(log, action_dist)
    if name == "snips":
        return snips(log, action_dist)
    if q is None:
        raise ValueError(f"{name} needs reward model predictions q")
    if name == "dm":
        return direct_method(log, action_dist, q)
    if name == "dr":
        return doubly_robust(log, action_dist, q)
    if name == "sndr":
        return sndr(log, action_dist, q)
    if name in TUNED:
        return tuned(name, log, action_dist, q)[0]
    raise ValueError(f"unknown estimator {name!r}; one of {ESTIMATORS}")


def mean_and_se(rewards: Array) -> tuple[float, float]:
    """On-policy value (mean reward) and its standard error (the noise of the "truth" OPE is scored on)."""
    n = len(rewards)
    return float(rewards.mean()), float(rewards.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")


def relative_error(estimate_value: float, truth: float) -> float:
    """|estimate - truth| / truth (the Open Bandit Pipeline's measure)."""
    if truth == 0:
        raise ValueError("relative error is undefined for a true value of 0")
    return abs(estimate_value - truth) / abs(truth)
