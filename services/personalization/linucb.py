"""LinUCB (disjoint): one ridge regression per arm over the context x, ranked by an upper confidence bound.

For arm ``a`` with statistics ``A_a = lam * I + sum x x^T`` and ``b_a = sum r x`` (Li, Chu, Langford,
Schapire, "A Contextual-Bandit Approach to Personalized News Article Recommendation", WWW 2010, alg. 1):

    theta_a = A_a^-1 b_a,    ucb_a(x) = theta_a . x + alpha * sqrt(x^T A_a^-1 x).

An arm here is whatever the caller keys statistics by: an item in the Open Bandit logs (context = the
user's features), a people segment in the service (context = the person x item features of each
candidate, so one arm ranks many items). The choice is made stochastic so that every candidate has a
logged propensity > 0 (off-policy evaluation of any later policy needs that): with probability
``1 - epsilon`` the slate is the top-k by UCB, otherwise a uniformly random ordered slate; the propensity of
the item at slot ``j`` is ``(1 - epsilon) * [item is the j-th by UCB] + epsilon / n``, a distribution over
the n candidates for every slot (:func:`slot_distribution`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


@dataclass(frozen=True)
class LinUCBConfig:
    """Hyper-parameters of a LinUCB policy (part of its version: new values = new statistics)."""

    alpha: float = 0.5
    """Width of the confidence bonus."""
    ridge: float = 1.0
    """lam: the prior precision (A starts at lam * I)."""
    epsilon: float = 0.1
    """Share of slates drawn uniformly at random (the logged propensities' floor is epsilon / n)."""
    min_arm_updates: int = 0
    """An arm with fewer updates scores by the pooled statistics of all arms instead (0: never)."""


class ArmStats:
    """A and b of one arm (float64; A kept whole so that an update is exactly the closed form)."""

    def __init__(self, dim: int, ridge: float = 1.0, a: Array | None = None, b: Array | None = None) -> None:
        self.A: Array = np.eye(dim) * ridge if a is None else np.asarray(a, dtype=np.float64)
        self.b: Array = np.zeros(dim) if b is None else np.asarray(b, dtype=np.float64)
        if self.A.shape != (dim, dim) or self.b.shape != (dim,):
            raise ValueError(f"arm statistics must be ({dim}, {dim}) and ({dim},)")

    @property
    def dim(self) -> int:
        return int(self.b.shape[0])

    def update(self, x: Array, reward: float) -> None:
        """A += x x^T, b += r x."""
        self.A = self.A + np.outer(x, x)
        self.b = self.b + reward * x

    def theta(self) -> Array:
        out: Array = np.asarray(np.linalg.solve(self.A, self.b), dtype=np.float64)
        return out

    def ucb(self, contexts: Array, alpha: float) -> Array:
        """UCB of each row of ``contexts`` (m, d)."""
        inv = np.linalg.inv(self.A)
        mean = contexts @ (inv @ self.b)
        width = np.sqrt(np.maximum(np.einsum("md,de,me->m", contexts, inv, contexts), 0.0))
        out: Array = mean + alpha * width
        return out


def closed_form(contexts: Array, rewards: Array, ridge: float) -> Array:
    """theta of ridge regression on all the data at once: (lam I + X^T X)^-1 X^T r."""
    d = contexts.shape[1]
    out: Array = np.asarray(np.linalg.solve(ridge * np.eye(d) + contexts.T @ contexts, contexts.T @ rewards),
                            dtype=np.float64)
    return out


def slot_distribution(scores: Array, k: int, epsilon: float) -> Array:
    """P(candidate c is shown at slot j), shape (n, k): column j sums to 1 over the n candidates.

    Ties in ``scores`` are broken by candidate order (stable), so the distribution is deterministic."""
    n = scores.shape[0]
    k = min(k, n)
    if n == 0:
        return np.zeros((0, 0))
    if not 0.0 < epsilon <= 1.0:
        raise ValueError("epsilon must be within (0, 1]: every candidate needs a propensity > 0")
    order = np.argsort(-scores, kind="stable")[:k]
    dist = np.full((n, k), epsilon / n)
    dist[order, np.arange(k)] += 1.0 - epsilon
    return dist


@dataclass(frozen=True)
class Slate:
    """A drawn slate: candidate indices in slot order and each one's propensity at its slot."""

    items: tuple[int, ...]
    propensities: tuple[float, ...]
    explored: bool
    """Whether the slate was the uniformly random one."""


def draw_slate(scores: Array, k: int, epsilon: float, rng: np.random.Generator) -> Slate:
    """Top-k by score with probability 1 - epsilon, else a uniformly random ordered slate."""
    n = scores.shape[0]
    k = min(k, n)
    dist = slot_distribution(scores, k, epsilon)
    explored = bool(rng.random() < epsilon)
    items = rng.permutation(n)[:k] if explored else np.argsort(-scores, kind="stable")[:k]
    props = tuple(float(dist[int(c), j]) for j, c in enumerate(items))
    return Slate(tuple(int(c) for c in items), props, explored)
