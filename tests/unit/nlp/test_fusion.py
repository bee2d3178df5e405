"""Fusion, ranking metrics, weight choice and threshold calibration on small hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from services.nlp.duplicates import Flagged, calibrate_threshold
from services.nlp.fusion import Bm25, choose_weight, first_relevant_ranks, fuse, normalised, quality, tokens


def test_fuse_is_the_convex_combination_of_cosine_and_normalised_bm25() -> None:
    dense = np.array([0.9, 0.5, 0.1])
    lexical = np.array([0.0, 4.0, 2.0])
    assert np.allclose(fuse(dense, lexical, 1.0), dense)
    assert np.allclose(fuse(dense, lexical, 0.0), [0.0, 1.0, 0.5])
    assert np.allclose(fuse(dense, lexical, 0.25), 0.25 * dense + 0.75 * np.array([0.0, 1.0, 0.5]))
    assert np.all(normalised(np.zeros(3)) == 0)  # nothing matched: no division by zero
    with pytest.raises(ValueError, match="not in"):
        fuse(dense, lexical, 1.5)


def test_ranks_leave_the_query_out_and_count_ties_against_the_relevant_item() -> None:
    scores = [np.array([1.0, 0.2, 0.8, 0.8]), np.array([0.1, 0.9, 0.3, 0.4])]
    # query 0 is document 0 (left out); its duplicate 3 ties with 2 -> rank 2. Query 1: duplicate 0 is last.
    ranks = first_relevant_ranks(scores, [[3], [0, 2]], [0, 1])
    assert ranks == [2, 2]
    q = quality([1, 2, 7, 30])
    assert (q.recall_at_1, q.recall_at_5, q.recall_at_10) == (0.25, 0.5, 0.75)
    assert q.mrr == pytest.approx((1 + 1 / 2 + 1 / 7 + 1 / 30) / 4)


def test_choose_weight_takes_the_best_grid_point_of_the_objective() -> None:
    assert choose_weight(lambda w: -abs(w - 0.7)) == 0.7
    assert choose_weight(lambda w: 1.0, grid=(0.2, 0.4)) == 0.2  # ties: the first


def test_threshold_is_the_lowest_score_that_keeps_the_target_precision() -> None:
    scores = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5])
    correct = np.array([True, True, True, True, False, True, False])
    flagged = Flagged(scores, correct)
    t = calibrate_threshold(flagged, target=0.8, min_flagged=2)
    assert t == 0.6  # 5 of the 6 flagged at >= 0.6 are right (0.83); at 0.5, 5/7 = 0.71
    at = flagged.at(t)
    assert at["precision"] == pytest.approx(5 / 6) and at["recall"] == 1.0
    assert calibrate_threshold(Flagged(scores, ~correct), target=0.9, min_flagged=2) >= 0.5  # unreachable: best


def test_bm25_scores_documents_sharing_the_query_words() -> None:
    bm25 = Bm25(["NameNode crashes on restart", "Fix the docs typo", "namenode edit log corrupt"])
    s = bm25.scores("the namenode crashes")
    assert s[0] > s[2] > 0 and s[1] == 0  # "the" is a stopword
    assert bm25.scores("zzz unknown").tolist() == [0, 0, 0]
    assert tokens("Hello, WORLD of it_works") == ["hello", "world", "it_works"]


def test_time_prior_favours_items_created_close_to_the_query_and_ignores_unknown_times() -> None:
    from services.nlp.fusion import NO_TIME_PRIOR, TimePrior

    prior = TimePrior(0.3, 10.0)
    bonus = prior.bonus(100.0, np.asarray([100.0, 110.0, 400.0, 0.0]))
    assert bonus[0] == pytest.approx(0.3) and bonus[1] == pytest.approx(0.3 * np.exp(-1.0))
    assert bonus[2] < 1e-6 and bonus[3] == 0.0  # far apart; unknown creation time: no bonus
    assert prior.bonus(0.0, np.asarray([100.0])).tolist() == [0.0]  # query time unknown (free-text search)
    assert NO_TIME_PRIOR.bonus(100.0, np.asarray([100.0])).tolist() == [0.0]


def test_choose_fusion_finds_the_time_prior_that_the_objective_rewards() -> None:
    from services.nlp.fusion import TimePrior, choose_fusion

    def objective(weight: float, prior: TimePrior) -> float:
        return -abs(weight - 0.6) - abs(prior.weight - 0.2) - abs(prior.scale_days - 30.0) / 100

    weight, prior = choose_fusion(objective)
    assert (weight, prior.weight, prior.scale_days) == (0.6, 0.2, 30.0)
    weight, prior = choose_fusion(lambda w, p: -abs(w - 0.3) - p.weight)  # the prior never helps: none
    assert weight == 0.3 and prior.weight == 0.0
