"""LinUCB: incremental updates equal ridge regression's closed form; slates carry true propensities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.personalization.linucb import ArmStats, closed_form, draw_slate, slot_distribution
from services.personalization.obd import bts_action_dist, load

DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "bandits"


def test_incremental_update_equals_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6))
    r = (rng.random(200) < 0.3).astype(np.float64)
    arm = ArmStats(6, ridge=2.0)
    for xi, ri in zip(x, r, strict=True):
        arm.update(xi, float(ri))
    assert np.allclose(arm.A, 2.0 * np.eye(6) + x.T @ x)
    assert np.allclose(arm.theta(), closed_form(x, r, 2.0))


def test_ucb_bonus_shrinks_where_data_was_seen() -> None:
    arm = ArmStats(2, ridge=1.0)
    seen = np.array([1.0, 0.0])
    for _ in range(50):
        arm.update(seen, 1.0)
    ucb = arm.ucb(np.array([seen, [0.0, 1.0]]), alpha=1.0)
    # seen direction: mean ~1, tiny bonus; unseen: mean 0, bonus 1
    assert ucb[0] == pytest.approx(50 / 51 + 1 / np.sqrt(51))
    assert ucb[1] == pytest.approx(1.0)


@pytest.mark.parametrize(("n", "k"), [(10, 3), (3, 3), (2, 3), (1, 1)])
def test_every_slot_is_a_distribution_over_the_candidates_with_a_positive_floor(n: int, k: int) -> None:
    scores = np.random.default_rng(n).normal(size=n)
    dist = slot_distribution(scores, k, epsilon=0.2)
    assert dist.shape == (n, min(n, k))
    assert np.allclose(dist.sum(axis=0), 1.0)
    assert dist.min() >= 0.2 / n


def test_drawn_slates_follow_their_logged_propensities() -> None:
    rng = np.random.default_rng(1)
    scores = np.array([0.1, 0.9, 0.5, 0.3, 0.7])
    counts = np.zeros((5, 3))
    logged: dict[tuple[int, int], float] = {}
    n = 20_000
    for _ in range(n):
        slate = draw_slate(scores, 3, 0.3, rng)
        assert len(set(slate.items)) == 3
        for j, (item, p) in enumerate(zip(slate.items, slate.propensities, strict=True)):
            counts[item, j] += 1
            logged[(item, j)] = p
    expected = slot_distribution(scores, 3, 0.3)
    assert np.allclose(counts / n, expected, atol=0.01)
    assert all(expected[i, j] == pytest.approx(p) for (i, j), p in logged.items())


def test_epsilon_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        slot_distribution(np.zeros(3), 2, epsilon=0.0)


@pytest.mark.skipif(not DATA.exists(), reason="the Open Bandit sample lives in ../shared/data")
def test_bts_action_distribution_from_its_logs_is_a_distribution_per_slot() -> None:
    bts, _ = load(DATA, "bts")
    dist = bts_action_dist(bts)
    assert dist.shape == (80, 3)
    assert np.allclose(dist.sum(axis=0), 1.0)
    # the most often shown item at slot 1 is among the most probable ones
    top = np.bincount(bts.log.actions[bts.log.positions == 0], minlength=80).argmax()
    assert dist[top, 0] >= np.sort(dist[:, 0])[-5]
