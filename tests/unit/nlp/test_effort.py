from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from services.nlp.effort import (
    Candidate,
    EffortModel,
    clean_text,
    default_candidates,
    mae,
    select_effort_model,
)

WORDS = {"typo": 1.0, "label": 1.0, "refactor": 3.0, "endpoint": 5.0, "migration": 8.0, "rewrite": 13.0}
FILLER = ["the", "a", "component", "page", "user", "build", "release", "docs", "test", "config",
          "please", "should", "when"]


def synthetic_issues(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """Issue texts whose story points are driven by the keywords they contain."""
    rng = np.random.default_rng(seed)
    keys = list(WORDS)
    texts, points = [], []
    for _ in range(n):
        chosen = rng.choice(keys, size=int(rng.integers(1, 3)), replace=False)
        words = [*chosen, *rng.choice(FILLER, size=8)]
        rng.shuffle(words)
        texts.append(" ".join(words))
        points.append(max(WORDS[k] for k in chosen))
    return texts, np.asarray(points)


class HashEmbedder:
    """A deterministic bag-of-words embedder standing in for MiniLM (no model download in unit tests)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), 512))
        for i, text in enumerate(texts):
            for word in text.split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 512] += 1.0
        return np.asarray(out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9))


@pytest.mark.parametrize(
    "candidate",
    [Candidate("tfidf", "ridge", 1.0, True), Candidate("tfidf", "svr", 0.3, False),
     Candidate("minilm", "knn", 5, True), Candidate("minilm", "ridge", 1.0, True)],
    ids=lambda c: c.name,
)
def test_effort_model_beats_the_mean_baseline_and_round_trips(candidate: Candidate, tmp_path: Path) -> None:
    train_x, train_y = synthetic_issues(300, seed=0)
    test_x, test_y = synthetic_issues(100, seed=1)
    model = EffortModel(candidate, HashEmbedder()).fit(train_x, train_y)
    pred = model.predict(test_x)
    mean_mae = mae(test_y, np.full(len(test_y), train_y.mean()))
    assert mae(test_y, pred) < 0.85 * mean_mae

    model.save(tmp_path / "effort.pkl")
    loaded = EffortModel.load(tmp_path / "effort.pkl", HashEmbedder())
    assert loaded.candidate == candidate
    np.testing.assert_allclose(loaded.predict(test_x), pred)


def test_selection_picks_the_lowest_validation_mae() -> None:
    train_x, train_y = synthetic_issues(200, seed=2)
    val_x, val_y = synthetic_issues(80, seed=3)
    candidates = [Candidate("tfidf", "ridge", 1e6, True), Candidate("tfidf", "ridge", 1.0, True)]
    sel = select_effort_model(train_x, train_y, val_x, val_y, candidates, shrinks=(1.0,), snap=False,
                              include_median=False, ensemble_size=0, refit=False)
    assert set(sel.val_mae) == {c.name for c in candidates}
    assert sel.model.candidate == min(candidates, key=lambda c: sel.val_mae[c.name])
    assert sel.model.candidate.param == 1.0  # a huge ridge penalty predicts ~the median everywhere


def test_predict_before_fit_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        EffortModel(default_candidates(False)[0]).predict(["x"])


def test_clean_text_strips_markup() -> None:
    text = clean_text("Fix  login", "{html}<div><p>Broken &amp; slow, see https://x.y/z</p></div>{html}")
    assert text == "Fix login. Broken & slow, see URL"
