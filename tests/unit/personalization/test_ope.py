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


def test_switch_and_shrinkage_span_dm_to_dr_and_sndr_recovers_the_truth(
        logged: tuple[BanditLog, np.ndarray, float]) -> None:
    from mesh.ope import dr_os_round_rewards, sndr, switch_round_rewards

    log, target, truth = logged
    q = np.full_like(target, 0.2)
    dm, dr = direct_method(log, target, q), doubly_robust(log, target, q)
    assert switch_round_rewards(log, target, q, float("inf")).mean() == pytest.approx(dr)
    assert switch_round_rewards(log, target, q, 0.0).mean() == pytest.approx(dm)
    assert dr_os_round_rewards(log, target, q, float("inf")).mean() == pytest.approx(dr)
    assert dr_os_round_rewards(log, target, q, 0.0).mean() == pytest.approx(dm)
    assert sndr(log, target, q) == pytest.approx(truth, rel=0.05)


def test_slope_keeps_the_correction_when_the_reward_model_is_wrong_and_drops_it_when_it_is_right(
        logged: tuple[BanditLog, np.ndarray, float]) -> None:
    from mesh.ope import tuned

    log, target, truth = logged
    wrong = np.full_like(target, 0.2)  # DM with it is > 30% off: the data must overrule it
    right = np.broadcast_to(CTR, target.shape).copy()
    for name in ("switch-dr", "dr-os"):
        value, chosen = tuned(name, log, target, wrong)
        assert value == pytest.approx(truth, rel=0.05) and chosen > 0
        assert estimate(name, log, target, right) == pytest.approx(truth, rel=0.05)
    _, chosen_right = tuned("dr-os", log, target, right)
    assert chosen_right < float("inf")  # nothing to correct: the lower-variance end is kept


def test_slope_picks_the_narrowest_candidate_consistent_with_the_wider_ones() -> None:
    from mesh.ope import slope

    rng = np.random.default_rng(0)
    wide = rng.normal(1.0, 4.0, 2000)
    mid = rng.normal(1.0, 1.0, 2000)
    narrow_biased = rng.normal(3.0, 0.1, 2000)
    assert slope([wide, mid, narrow_biased]) == 1
    assert slope([narrow_biased]) == 0
    assert slope([wide, mid]) == 1


def test_the_truths_standard_error_is_the_binomial_one() -> None:
    from mesh.ope import mean_and_se

    clicks = np.zeros(10_000)
    clicks[:40] = 1.0
    mean, se = mean_and_se(clicks)
    assert mean == pytest.approx(0.004) and se == pytest.approx(np.sqrt(0.004 * 0.996 / 9_999), rel=1e-6)
