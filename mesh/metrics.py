"""Ranking metrics with one relevant item per list (NDCG@k, MRR), tie-aware.

A list is a score vector and the index of its relevant item. Ties are scored by their expectation
over a uniformly random order of the tied items, so a constant scorer gets the random baseline and not
a lucky (or unlucky) fixed tie-break.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[Any]


def _rank_range(scores: Scores, relevant: int) -> tuple[int, int]:
    """Best and worst 1-based rank the relevant item can take (equal scores in any order)."""
    s = np.asarray(scores, dtype=np.float64)
    target = s[relevant]
    greater = int(np.sum(s > target))
    ties = int(np.sum(s == target)) - 1
    return greater + 1, greater + 1 + ties


def ndcg_at_k(scores: Scores, relevant: int, k: int) -> float:
    """NDCG@k of one list with a single relevant item (the ideal DCG is 1)."""
    best, worst = _rank_range(scores, relevant)
    ranks = np.arange(best, worst + 1, dtype=np.float64)
    gains = np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)
    return float(gains.mean())


def reciprocal_rank(scores: Scores, relevant: int) -> float:
    best, worst = _rank_range(scores, relevant)
    return float(np.mean(1.0 / np.arange(best, worst + 1, dtype=np.float64)))


@dataclass(frozen=True)
class RankingQuality:
    """Mean metrics over lists."""

    ndcg_at_5: float
    ndcg_at_10: float
    mrr: float
    lists: int

    def as_dict(self) -> dict[str, float]:
        return {"ndcg@5": self.ndcg_at_5, "ndcg@10": self.ndcg_at_10, "mrr": self.mrr}


def ranking_quality(lists: Iterable[tuple[Scores, int]]) -> RankingQuality:
    """Mean NDCG@5, NDCG@10 and MRR over ``(scores, relevant_index)`` lists."""
    rows = [(ndcg_at_k(s, r, 5), ndcg_at_k(s, r, 10), reciprocal_rank(s, r)) for s, r in lists]
    if not rows:
        raise ValueError("no lists to evaluate")
    mean = np.asarray(rows).mean(axis=0)
    return RankingQuality(float(mean[0]), float(mean[1]), float(mean[2]), len(rows))


def split_scores(scores: Scores, sizes: Sequence[int] | npt.NDArray[Any]) -> list[Scores]:
    """Cut a flat score vector into consecutive lists of the given sizes."""
    if int(np.sum(sizes)) != len(scores):
        raise ValueError(f"{len(scores)} scores for lists of {int(np.sum(sizes))} items")
    return list(np.split(np.asarray(scores).reshape(-1), np.cumsum(sizes)[:-1]))
