"""Hybrid ranking: a convex combination of the embedding cosine and the BM25 score normalised by the
query's best, with the weight chosen on training queries (:func:`choose_weight`), never by hand; plus, when
both items' creation times are known, a time prior: ``time_weight * exp(-|days apart| / time_scale_days)``
(duplicates are mostly filed close in time: half of Hadoop's train pairs within ~50 days), its weight and
scale chosen on the same training queries (:func:`choose_fusion`).

Also the BM25 side (``bm25s``) with one tokenisation for documents and queries, and the ranking metrics
(recall@k, MRR) the calibration and the benchmark share."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float64]
DEFAULT_WEIGHT = 0.5
"""Used only when no calibrated weight is stamped in the served model (logged as uncalibrated)."""
WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))
TIME_WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
TIME_SCALE_GRID = (3.0, 10.0, 30.0, 100.0, 300.0, 1000.0)
DAY_S = 86400.0
_TOKEN = re.compile(r"[a-z0-9_]+")


def normalised(lexical: Scores) -> Scores:
    """BM25 scores divided by the best one (0..1; all zeros when nothing matched)."""
    best = float(np.max(lexical)) if lexical.size else 0.0
    return lexical / best if best > 0 else np.zeros_like(lexical, dtype=np.float64)


def fuse(dense: Scores, lexical: Scores, weight: float) -> Scores:
    """``weight`` * cosine + (1 - ``weight``) * BM25/best, element-wise over aligned candidates."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"fusion weight {weight} is not in [0, 1]")
    return weight * dense.astype(np.float64) + (1.0 - weight) * normalised(lexical.astype(np.float64))


@dataclass(frozen=True)
class TimePrior:
    """``weight * exp(-|days apart| / scale_days)`` added to the fused score; 0 when a time is unknown (<= 0)."""

    weight: float = 0.0
    scale_days: float = 100.0

    def bonus(self, query_days: float, days: Scores) -> Scores:
        days = np.asarray(days, dtype=np.float64)
        if self.weight <= 0.0 or query_days <= 0.0:
            return np.zeros_like(days)
        return np.where(days > 0.0, self.weight * np.exp(-np.abs(days - query_days) / self.scale_days), 0.0)


NO_TIME_PRIOR = TimePrior()


def choose_fusion(objective: Callable[[float, TimePrior], float], weights: Sequence[float] = WEIGHT_GRID,
                  time_weights: Sequence[float] = TIME_WEIGHT_GRID, time_scales: Sequence[float] = TIME_SCALE_GRID
                  ) -> tuple[float, TimePrior]:
    """The (fusion weight, time prior) with the highest ``objective`` (e.g. MRR on training queries) over the
    grids; ties: the first (no time prior before any, smaller weights first)."""
    best: tuple[float, int, float, TimePrior] | None = None
    i = 0
    for tw in time_weights:
        for scale in (time_scales if tw > 0 else time_scales[:1]):
            prior = TimePrior(tw, scale) if tw > 0 else NO_TIME_PRIOR
            for w in weights:
                value = objective(w, prior)
                if best is None or value > best[0]:
                    best = (value, i, w, prior)
                i += 1
    assert best is not None
    return best[2], best[3]


def tokens(text: str, stopwords: frozenset[str] | None = None) -> list[str]:
    """Lower-cased word tokens without English stopwords (documents and queries alike)."""
    stop = _stopwords() if stopwords is None else stopwords
    return [t for t in _TOKEN.findall(text.lower()) if t not in stop]


def _stopwords() -> frozenset[str]:
    global _STOP
    if _STOP is None:
        from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]

        _STOP = frozenset(STOPWORDS_EN)
    return _STOP


_STOP: frozenset[str] | None = None


class Bm25:
    """A BM25 index (``bm25s``) over a list of texts; :meth:`scores` gives every document's score."""

    def __init__(self, texts: Sequence[str]) -> None:
        import bm25s  # type: ignore[import-untyped]

        self.size = len(texts)
        self._index = bm25s.BM25()
        if texts:
            self._index.index([tokens(t) for t in texts], show_progress=False)

    def scores(self, query: str) -> Scores:
        if not self.size:
            return np.zeros(0)
        words = [t for t in tokens(query) if t in self._index.vocab_dict]
        if not words:
            return np.zeros(self.size)
        return np.asarray(self._index.get_scores(words), dtype=np.float64)


@dataclass(frozen=True)
class RankQuality:
    """Recall@1/5/10 and MRR of the first relevant item, over queries."""

    recall_at_1: float
    recall_at_5: float
    recall_at_10: float
    mrr: float
    queries: int

    def as_dict(self) -> dict[str, float]:
        return {"recall@1": self.recall_at_1, "recall@5": self.recall_at_5, "recall@10": self.recall_at_10,
                "mrr": self.mrr, "queries": float(self.queries)}


def first_relevant_ranks(scores: Sequence[Scores], relevant: Sequence[Sequence[int]],
                         exclude: Sequence[int]) -> list[int]:
    """1-based rank of the best-ranked relevant document per query (``exclude[q]``, the query itself, is
    left out of its own ranking). Ties count against the relevant document."""
    ranks = []
    for s, rel, skip in zip(scores, relevant, exclude, strict=True):
        s = s.astype(np.float64).copy()
        s[skip] = -np.inf
        best = max(float(s[r]) for r in rel)
        ranks.append(int(np.sum(s >= best)))
    return ranks


def quality(ranks: Sequence[int]) -> RankQuality:
    r = np.asarray(ranks, dtype=np.float64)
    if not r.size:
        return RankQuality(0.0, 0.0, 0.0, 0.0, 0)
    return RankQuality(float(np.mean(r <= 1)), float(np.mean(r <= 5)), float(np.mean(r <= 10)),
                       float(np.mean(1.0 / r)), int(r.size))


def choose_weight(objective: Callable[[float], float], grid: Sequence[float] = WEIGHT_GRID) -> float:
    """The grid weight with the highest ``objective`` (e.g. MRR on training queries); ties: the first."""
    values = [(objective(w), -i, w) for i, w in enumerate(grid)]
    return max(values)[2]


def scores_of(candidates: Mapping[str, float], order: Sequence[str]) -> Scores:
    """A dict of scores as an array aligned to ``order`` (0 for absent ids)."""
    return np.asarray([candidates.get(i, 0.0) for i in order], dtype=np.float64)
