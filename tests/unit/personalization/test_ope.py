"""Off-policy estimators on synthetic logs whose true policy value is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest

from mesh.ope import BanditLog, direct_method, doubly_robust, estimate, importance_weights, ipw, relative_error, snips

N_ACTIONS, N_POS = 5, 2
CTR = np.array([[0.1, 0.05], [0.3, 0.15], [0.05, 0.02], [0.6, 0.3], [0.2, 0.1]])  # (action, position)


def _log(n: int, behaviour: np.ndarray, seed: int) -> BanditLog:
    rng = np.random.default_rng(seed)
    positions = rng.integers(0, N_POS, n)
    actions = np.array([rng.choice(N_ACTIONS, p=behaviour[:, k]) for k in positions])
    rewards = (rng.random(n) < CTR[actions, positions]).astype(np.float64)
    return BanditLog(actions.astype(np.int64), positions.astype(np.int64), rewards, behaviour[actions, positions])


def _target() -> np.ndarray:
    target = np.full((N_ACTIONS, N_POS), 0.05)
    target[3] = 0.8  # the best item gets most of the mass at both slots
    return target


def _true_value(target: np.ndarray, positions: np.ndarray) -> float:
    per_slot = (target * CTR).sum(axis=0)
    return float(per_slot[positions].mean())


@pytest.fixture(scope="module")
def logged() -> tuple[BanditLog, np.ndarray, float]:
    behaviour = np.full((N_ACTIONS, N_POS), 1.0 / N_ACTIONS)
    log = _log(40_000, behaviour, seed=3)
    target = np.broadcast_to(_target(), (len(log), N_ACTIONS, N_POS)).copy()
    return log, target, _true_value(_target(), log.positions)


def test_ipw_snips_and_dr_recover_the_true_value(logged: tuple[BanditLog, np.ndarray, float]) -> None:
    log, target, truth = logged
    wrong_q = np.full_like(target, 0.2)  # a poor reward model: DR must still be right through the weights
    assert ipw(log, target) == pytest.approx(truth, rel=0.05)
    assert snips(log, target) == pytest.approx(truth, rel=0.05)
    assert doubly_robust(log, target, wrong_q) == pytest.approx(truth, rel=0.05)


def test_dm_is_exact_with_the_true_reward_model_and_biased_with_a_wrong_one(
        logged: tuple[BanditLog, np.ndarray, float]) -> None:
    log, target, truth = logged
    true_q = np.broadcast_to(CTR, target.shape).copy()
    assert direct_method(log, target, true_q) == pytest.approx(truth, rel=1e-9)
    assert relative_error(direct_method(log, target, np.full_like(target, 0.2)), truth) > 0.3


def test_evaluating_the_logging_policy_itself_gives_the_logged_mean() -> None:
    behaviour = np.array([[0.4, 0.1], [0.3, 0.2], [0.1, 0.3], [0.1, 0.2], [0.1, 0.2]])
    log = _log(2000, behaviour, seed=5)
    dist = np.broadcast_to(behaviour, (len(log), N_ACTIONS, N_POS)).copy()
    assert np.allclose(importance_weights(log, dist), 1.0)
    assert ipw(log, dist) == pytest.approx(log.rewards.mean())
    assert snips(log, dist) == pytest.approx(log.rewards.mean())


def test_bad_inputs_are_refused() -> None:
    good = BanditLog(np.array([0]), np.array([0]), np.array([1.0]), np.array([0.5]))
    with pytest.raises(ValueError, match="propensity"):
        BanditLog(np.array([0]), np.array([0]), np.array([1.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="sum to 1"):
        ipw(good, np.full((1, N_ACTIONS, N_POS), 0.5))
    with pytest.raises(ValueError, match="needs reward model"):
        estimate("dr", good, np.full((1, 2, 1), 0.5))
