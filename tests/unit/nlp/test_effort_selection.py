"""Median-centred selection: shrinkage, snapping, the 1-SE guard, the ensemble and the train+val refit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from services.nlp.effort import (
    MEDIAN,
    Candidate,
    EffortModel,
    Ensemble,
    default_candidates,
    mae,
    postprocess,
    select_effort_model,
    snap_to_scale,
)

from .test_effort import HashEmbedder, synthetic_issues

SCALE = np.array([1.0, 2.0, 3.0, 5.0, 8.0, 13.0])
CANDIDATES = [*default_candidates(use_embeddings=False),
              Candidate("minilm", "ridge", 1.0, True), Candidate("minilm", "knnmed", 15, False)]


def noise_issues(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Random word salad; the points are drawn independently of the text (skewed, like real data)."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(400)]
    texts = [" ".join(rng.choice(vocab, size=12)) for _ in range(n)]
    points = rng.choice(SCALE, size=n, p=[0.15, 0.2, 0.3, 0.2, 0.1, 0.05])
    return texts, points


def test_pure_noise_text_selects_the_median() -> None:
    train_x, train_y = noise_issues(300, seed=4)
    val_x, val_y = noise_issues(120, seed=5)
    sel = select_effort_model(train_x, train_y, val_x, val_y, CANDIDATES, HashEmbedder())
    assert sel.chosen == "median"
    assert sel.refit
    test_x, _ = noise_issues(50, seed=6)
    expected = np.median(np.concatenate([train_y, val_y]))  # refitted on train+val
    np.testing.assert_allclose(sel.model.predict(test_x), expected)


def test_informative_text_selects_a_text_model_that_beats_the_median() -> None:
    train_x, train_y = synthetic_issues(300, seed=7)
    val_x, val_y = synthetic_issues(120, seed=8)
    test_x, test_y = synthetic_issues(120, seed=9)
    sel = select_effort_model(train_x, train_y, val_x, val_y, CANDIDATES, HashEmbedder())
    assert sel.chosen != "median"
    assert sel.val_mae[sel.chosen] < 0.7 * sel.val_mae["median"]
    median_mae = mae(test_y, np.full(len(test_y), np.median(train_y)))
    assert mae(test_y, sel.model.predict(test_x)) < 0.7 * median_mae


def test_guard_off_is_plain_argmin_over_every_configuration() -> None:
    train_x, train_y = noise_issues(200, seed=10)
    val_x, val_y = noise_issues(80, seed=11)
    sel = select_effort_model(train_x, train_y, val_x, val_y, CANDIDATES, HashEmbedder(),
                              min_gain_se=0.0, refit=False)
    assert sel.chosen == min(sel.val_mae, key=lambda k: sel.val_mae[k])
    # shrunk, snapped and ensemble configurations were all scored
    assert any("*0.25" in k for k in sel.val_mae)
    assert any(k.endswith("+snap") for k in sel.val_mae)
    assert any(k.startswith("median-of[") for k in sel.val_mae)
    # without refit the chosen model reproduces its validation score
    assert mae(val_y, sel.model.predict(val_x)) == sel.val_mae[sel.chosen]


def test_refit_uses_train_and_val() -> None:
    train_x, _ = noise_issues(20, seed=12)
    val_x, _ = noise_issues(30, seed=13)
    train_y, val_y = np.full(20, 1.0), np.full(30, 5.0)
    for refit, expected in ((True, 5.0), (False, 1.0)):
        sel = select_effort_model(train_x, train_y, val_x, val_y, [], refit=refit)
        assert sel.model.candidate == MEDIAN
        np.testing.assert_allclose(sel.model.predict(["anything"]), expected)


def test_shrinkage_and_snapping() -> None:
    pred = np.array([0.0, 2.4, 4.1, 6.6, 30.0])
    clip = (1.0, 13.0)
    np.testing.assert_allclose(postprocess(pred, 3.0, 0.0, False, SCALE, clip), 3.0)
    np.testing.assert_allclose(postprocess(pred, 3.0, 0.5, False, SCALE, clip),
                               [1.5, 2.7, 3.55, 4.8, 13.0])
    np.testing.assert_allclose(snap_to_scale(pred, SCALE), [1.0, 2.0, 5.0, 8.0, 13.0])
    np.testing.assert_allclose(snap_to_scale(pred, np.array([3.0])), 3.0)


def test_ensemble_fits_predicts_and_round_trips(tmp_path: Path) -> None:
    train_x, train_y = synthetic_issues(300, seed=14)
    test_x, test_y = synthetic_issues(100, seed=15)
    members = (Candidate("tfidf", "ridge", 1.0, True, shrink=0.75),
               Candidate("minilm", "knnmed", 15, False), Candidate("tfidf", "svr", 0.3, False))
    model = EffortModel(Ensemble(members, snap=True), HashEmbedder()).fit(train_x, train_y)
    pred = model.predict(test_x)
    assert set(np.unique(pred)) <= set(np.unique(train_y))  # snapped onto the train scale
    assert mae(test_y, pred) < 0.7 * mae(test_y, np.full(len(test_y), np.median(train_y)))
    model.save(tmp_path / "ens.pkl")
    np.testing.assert_allclose(EffortModel.load(tmp_path / "ens.pkl", HashEmbedder()).predict(test_x), pred)
