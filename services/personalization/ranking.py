"""Implicit-feedback ranking quality, leave-last-out by time: each user's latest interaction is held out,
everything earlier trains; recall@k and NDCG@k of the held-out item among the items the user has not
interacted with in training (ALS vs popularity)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.personalization.factors import AlsFactors, Interaction, train_als


@dataclass(frozen=True)
class Timed:
    user_id: str
    item_id: str
    weight: float
    at: float


@dataclass(frozen=True)
class RankingResult:
    users: int
    recall: dict[str, float]
    ndcg: dict[str, float]


def leave_last_out(rows: Sequence[Timed]) -> tuple[list[Timed], dict[str, str]]:
    """(training rows, user -> held-out item); users with a single interaction only train."""
    by_user: dict[str, list[Timed]] = {}
    for r in rows:
        by_user.setdefault(r.user_id, []).append(r)
    train: list[Timed] = []
    held: dict[str, str] = {}
    for user, rs in by_user.items():
        rs.sort(key=lambda r: (r.at, r.item_id))
        if len(rs) < 2:
            train += rs
            continue
        last = rs[-1]
        held[user] = last.item_id
        train += [r for r in rs[:-1] if r.item_id != last.item_id]  # a re-watch of the held item is not a hint
    return train, held


def _rank_of(scores: np.ndarray, target: int, excluded: np.ndarray) -> int:
    s = scores.copy()
    s[excluded] = -np.inf
    return int((s > s[target]).sum())


def evaluate(rows: Sequence[Timed], k: int = 10, factors: int = 64, iterations: int = 15,
             regularization: float = 0.05, alpha: float = 10.0) -> RankingResult:
    train, held = leave_last_out(rows)
    als = train_als((Interaction(r.user_id, r.item_id, r.weight) for r in train), factors, iterations,
                    regularization, alpha)
    assert als is not None
    index = {t: i for i, t in enumerate(als.item_ids)}
    popularity = np.zeros(len(als.item_ids))
    seen: dict[str, list[int]] = {}
    for r in train:
        popularity[index[r.item_id]] += 1
        seen.setdefault(r.user_id, []).append(index[r.item_id])
    hits = {"als": 0.0, "popularity": 0.0}
    gains = {"als": 0.0, "popularity": 0.0}
    n = 0
    for user, item in held.items():
        vec = als.user_vector(user)
        if item not in index or vec is None:
            continue  # an item nobody trained on cannot be ranked by either model
        n += 1
        excluded = np.array(seen.get(user, []), dtype=np.int64)
        for name, scores in (("als", als.items @ vec), ("popularity", popularity)):
            rank = _rank_of(np.asarray(scores, dtype=np.float64), index[item], excluded)
            if rank < k:
                hits[name] += 1
                gains[name] += 1.0 / math.log2(rank + 2)
    return RankingResult(n, {m: v / max(n, 1) for m, v in hits.items()}, {m: v / max(n, 1) for m, v in gains.items()})


def read_movielens(path: str) -> list[Timed]:
    """``u.data``: user, item, rating, timestamp (tab separated); every rating is an implicit interaction."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4:
                rows.append(Timed(parts[0], parts[1], 1.0, float(parts[3])))
    return rows


__all__ = ["AlsFactors", "RankingResult", "Timed", "evaluate", "leave_last_out", "read_movielens"]
