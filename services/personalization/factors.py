"""Trained parts of the policy, exported as plain numpy arrays (serving imports no training library):

- ALS factors on implicit feedback (views, weighted by dwell; clicks on recommendations), trained with
  ``implicit`` (Hu, Koren, Volinsky, "Collaborative Filtering for Implicit Feedback Datasets", ICDM 2008);
- people segments: k-means over behaviour features (what types of task a person looks at, how much),
  the bandit's arm (one LinUCB model per segment) and the cold start of people ALS has not seen.

``PolicyModel.save``/``load`` write and read one ``.npz`` (no pickle), registered in MLflow as
:data:`MODEL_NAME` by ``python -m services.personalization.train`` and fetched by alias for serving.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mesh.events import TASK_TYPE_SLOTS, task_type_slot
from services.personalization.state import PersonState

Array = npt.NDArray[np.float64]
MODEL_NAME = "personalization-policy"
"""The registered model (MLflow): one ``.npz`` per version, served by alias."""
POLICY_FILE = "policy.npz"


@dataclass(frozen=True)
class Interaction:
    user_id: str
    item_id: str
    weight: float


@dataclass(frozen=True)
class AlsFactors:
    user_ids: tuple[str, ...]
    item_ids: tuple[str, ...]
    users: Array
    items: Array
    _u: dict[str, int] = field(init=False, repr=False, compare=False)
    _i: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_u", {u: i for i, u in enumerate(self.user_ids)})
        object.__setattr__(self, "_i", {t: i for i, t in enumerate(self.item_ids)})

    def user_vector(self, user_id: str) -> Array | None:
        row = self._u.get(user_id)
        return None if row is None else self.users[row]

    def scores(self, user: Array | None, item_ids: Sequence[str]) -> Array:
        """user . item for each item (0 for items or a user ALS has not seen)."""
        out = np.zeros(len(item_ids))
        if user is None:
            return out
        index = self._i
        rows = [(j, index[t]) for j, t in enumerate(item_ids) if t in index]
        if rows:
            js, ks = zip(*rows, strict=True)
            out[list(js)] = self.items[list(ks)] @ user
        return out


def train_als(interactions: Iterable[Interaction], factors: int = 32, iterations: int = 15,
              regularization: float = 0.05, alpha: float = 10.0, seed: int = 0) -> AlsFactors | None:
    """ALS on the summed weights per (user, item); None when there is nothing to learn from."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns (and slows down) otherwise
    from implicit.cpu.als import AlternatingLeastSquares  # type: ignore[import-untyped]
    from scipy import sparse  # type: ignore[import-untyped]

    totals: dict[tuple[str, str], float] = {}
    for x in interactions:
        totals[(x.user_id, x.item_id)] = totals.get((x.user_id, x.item_id), 0.0) + x.weight
    if not totals:
        return None
    users = tuple(sorted({u for u, _ in totals}))
    items = tuple(sorted({i for _, i in totals}))
    ui, ii = {u: k for k, u in enumerate(users)}, {t: k for k, t in enumerate(items)}
    rows = [ui[u] for u, _ in totals]
    cols = [ii[t] for _, t in totals]
    matrix = sparse.csr_matrix((alpha * np.fromiter(totals.values(), float), (rows, cols)),
                               shape=(len(users), len(items)), dtype=np.float32)
    model = AlternatingLeastSquares(factors=factors, iterations=iterations, regularization=regularization,
                                    random_state=seed, num_threads=1)
    model.fit(matrix, show_progress=False)
    return AlsFactors(users, items, np.asarray(model.user_factors, dtype=np.float64),
                      np.asarray(model.item_factors, dtype=np.float64))


def behaviour(person: PersonState) -> Array:
    """Behaviour features of a person: share of views per task type, log views, click rate."""
    total = sum(person.type_views.values())
    shares = np.zeros(len(TASK_TYPE_SLOTS))
    for task_type, n in person.type_views.items():
        shares[TASK_TYPE_SLOTS.index(task_type_slot(task_type))] += n / total
    click_rate = person.clicks / person.feedback if person.feedback else 0.0
    return np.concatenate([shares, [np.log1p(sum(person.task_views.values())) / 5.0, click_rate]])


@dataclass(frozen=True)
class Segments:
    centroids: Array

    def of(self, features: Array) -> int:
        return int(np.argmin(((self.centroids - features) ** 2).sum(axis=1)))


def kmeans(x: Array, k: int, seed: int = 0, iterations: int = 50) -> Array:
    """Lloyd's k-means with k-means++ seeding (numpy only: small inputs, no thread pool to contend for)."""
    rng = np.random.default_rng(seed)
    centroids = [x[int(rng.integers(len(x)))]]
    for _ in range(1, k):
        d = np.min([((x - c) ** 2).sum(axis=1) for c in centroids], axis=0)
        total = float(d.sum())
        centroids.append(x[int(rng.choice(len(x), p=d / total))] if total > 0 else x[int(rng.integers(len(x)))])
    c = np.stack(centroids)
    for _ in range(iterations):
        labels = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        moved = np.stack([x[labels == j].mean(axis=0) if np.any(labels == j) else c[j] for j in range(k)])
        if np.allclose(moved, c):
            break
        c = moved
    return c


def fit_segments(people: Sequence[PersonState], k: int = 4, seed: int = 0) -> Segments:
    """k-means over the behaviour of ``people`` (fewer segments when there are fewer distinct people)."""
    if not people:
        return Segments(np.zeros((1, len(TASK_TYPE_SLOTS) + 2)))
    x = np.stack([behaviour(p) for p in people])
    k = max(1, min(k, len({tuple(r) for r in x.round(6)})))
    return Segments(kmeans(x, k, seed))


@dataclass(frozen=True)
class PolicyModel:
    """What a policy version serves with besides its bandit statistics."""

    version: str
    als: AlsFactors | None
    segments: Segments
    cold_users: Array | None = None
    """(segments, factors): the mean ALS vector of each segment's known people, a new person's vector."""

    def cold_vector(self, segment: int) -> Array | None:
        if self.cold_users is None or not 0 <= segment < len(self.cold_users):
            return None
        vec = self.cold_users[segment]
        return vec if np.any(vec) else None

    def save(self, path: Path) -> Path:
        als = self.als
        np.savez(path, version=np.array(self.version), centroids=self.segments.centroids,
                 user_ids=np.array(als.user_ids if als else (), dtype=str),
                 item_ids=np.array(als.item_ids if als else (), dtype=str),
                 users=als.users if als else np.zeros((0, 0)), items=als.items if als else np.zeros((0, 0)),
                 cold_users=self.cold_users if self.cold_users is not None else np.zeros((0, 0)))
        return path

    @staticmethod
    def load(path: Path) -> PolicyModel:
        with np.load(path, allow_pickle=False) as z:
            als = None
            if z["users"].size:
                als = AlsFactors(tuple(str(u) for u in z["user_ids"]), tuple(str(i) for i in z["item_ids"]),
                                 z["users"].astype(np.float64), z["items"].astype(np.float64))
            cold = z["cold_users"].astype(np.float64) if z["cold_users"].size else None
            return PolicyModel(str(z["version"]), als, Segments(z["centroids"].astype(np.float64)), cold)


def build_model(version: str, als: AlsFactors | None, people: Sequence[PersonState], k: int = 4, seed: int = 0
                ) -> PolicyModel:
    """Segments of ``people`` and, with ALS, each segment's mean user vector (the cold start)."""
    segments = fit_segments(people, k, seed)
    cold = None
    if als is not None:
        cold = np.zeros((len(segments.centroids), als.users.shape[1]))
        members: dict[int, list[Array]] = {}
        for p in people:
            vec = als.user_vector(p.entity_id)
            if vec is not None:
                members.setdefault(segments.of(behaviour(p)), []).append(vec)
        for seg, vecs in members.items():
            cold[seg] = np.mean(vecs, axis=0)
    return PolicyModel(version, als, segments, cold)
