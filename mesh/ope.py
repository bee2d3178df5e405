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

References: Dudik, Langford, Li, "Doubly Robust Policy Evaluation and Learning" (ICML 2011); Swaminathan
and Joachims, "The Self-Normalized Estimator for Counterfactual Learning" (NeurIPS 2015). The ``obp``
package implements the same estimators; it is not needed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Estimator = Literal["dm", "ipw", "snips", "dr"]
ESTIMATORS: tuple[Estimator, ...] = ("dm", "ipw", "snips", "dr")


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


def estimate(name: Estimator, log: BanditLog, action_dist: Array, q: Array | None = None) -> float:
    """The value of the policy ``action_dist`` by estimator ``name`` (DM and DR need ``q``)."""
    if name in ("dm", "dr") and q is None:
        raise ValueError(f"{name} needs reward model predictions q")
    if name == "dm":
        assert q is not None
        return direct_method(log, action_dist, q)
    if name == "ipw":
        return ipw(log, action_dist)
    if name == "snips":
        return snips(log, action_dist)
    assert q is not None
    return doubly_robust(log, action_dist, q)


def relative_error(estimate_value: float, truth: float) -> float:
    """|estimate - truth| / truth (the Open Bandit Pipeline's measure)."""
    if truth == 0:
        raise ValueError("relative error is undefined for a true value of 0")
    return abs(estimate_value - truth) / abs(truth)
