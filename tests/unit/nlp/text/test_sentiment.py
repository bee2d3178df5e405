"""Sentiment: tiny models trained once per session on a slice of the Jira set; the ONNX head reproduces
scikit-learn (batch 1 and many), predictions and refusals, training beats the majority class, and the
training command registers a champion in a temporary MLflow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mesh.config import MeshSettings
from mesh.models import FeatureSchemaMismatch, ModelRegistry, OnnxModel
from services.nlp.text import SentimentModel
from services.nlp.text._sentiment_fit import (
    BASELINE,
    Candidate,
    FittedSentiment,
    SentimentData,
    export_head,
    fit,
    load_sentiment_csv,
    macro_f1,
    majority_f1,
    verify_export,
)
from services.nlp.text.sentiment_train import train_sentiment

# 50 comments per fold of the Jira set, committed (tests/data/sentiment/README.md): no dependency on ../shared
DATA = Path(__file__).resolve().parents[3] / "data" / "sentiment" / "jira_sample.csv"
PER_FOLD = 50


@dataclass(frozen=True)
class Trained:
    data: SentimentData
    embeddings: np.ndarray
    train: np.ndarray
    test: np.ndarray
    tfidf: FittedSentiment
    both: FittedSentiment
    tfidf_path: Path
    both_path: Path


def fake_embeddings(texts: Sequence[str]) -> np.ndarray:
    """Deterministic unit vectors per text (MiniLM itself is not run in unit tests)."""
    rows = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=384) for t in texts]
    out = np.asarray(rows, dtype=np.float32)
    return np.asarray(out / np.linalg.norm(out, axis=1, keepdims=True), dtype=np.float32)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    full = load_sentiment_csv(DATA)
    rng = np.random.default_rng(0)
    data = full.take(np.sort(np.concatenate([rng.choice(np.flatnonzero(full.folds == k), PER_FOLD, replace=False)
                                             for k in range(10)])))
    embeddings = fake_embeddings(data.texts)
    train, test = np.flatnonzero(data.folds != 0), np.flatnonzero(data.folds == 0)
    texts = [data.texts[i] for i in train]
    tfidf = fit(BASELINE, texts, embeddings[train], data.labels[train])
    both = fit(Candidate("tfidf+minilm", 3.0, 1.5, chars=True), texts, embeddings[train], data.labels[train])
    out = tmp_path_factory.mktemp("sentiment")
    return Trained(data, embeddings, train, test, tfidf, both, export_head(tfidf, out / "tfidf.onnx"),
                   export_head(both, out / "both.onnx"))


def test_onnx_heads_reproduce_scikit_learn_at_batch_1_and_many(trained: Trained) -> None:
    texts = [trained.data.texts[i] for i in trained.test]
    for fitted, path in ((trained.tfidf, trained.tfidf_path), (trained.both, trained.both_path)):
        assert verify_export(fitted, path, texts, trained.embeddings[trained.test], tolerance=1e-5) <= 1e-5
    model = OnnxModel.load(trained.both_path, MeshSettings().models, warm_up=False)
    assert set(model.input_names) == {"term_tf", "char_tf", "embedding"} and model.output_names == ("probabilities",)


def test_tfidf_model_beats_the_majority_class_on_a_held_out_fold(trained: Trained) -> None:
    data, test = trained.data, trained.test
    model = SentimentModel.load(trained.tfidf_path)
    predicted = model.probabilities([data.texts[i] for i in test]).argmax(1)
    assert macro_f1(data.labels[test], predicted) > majority_f1(data.labels[trained.train], data.labels[test]) + 0.15


def test_predict_many_gives_labels_scores_and_handles_empty_input(trained: Trained) -> None:
    model = SentimentModel.load(trained.tfidf_path)
    out = model.predict_many(["Thanks a lot, great work, this works perfectly now!", "", "x"])
    assert len(out) == 3 and model.predict_many([]) == []
    for s in out:
        assert s.label in ("negative", "neutral", "positive")
        assert -1.0 <= s.score <= 1.0 and abs(sum(s.probabilities) - 1.0) < 1e-5
        assert s.confidence == max(s.probabilities)
    assert out[0].score > out[1].score


def test_a_model_reading_embeddings_needs_the_embedder(trained: Trained) -> None:
    with pytest.raises(ValueError, match="embed="):
        SentimentModel.load(trained.both_path)
    texts = list(trained.data.texts[:5])
    calls: list[int] = []

    def embed(batch: Sequence[str]) -> np.ndarray:
        calls.append(len(batch))
        return fake_embeddings(tuple(batch))

    model = SentimentModel.load(trained.both_path, embed=embed)
    assert model.needs_embeddings and len(model.predict_many(texts)) == 5 and calls == [5]
    with pytest.raises(ValueError, match="384"):
        model.predict_many(texts, embeddings=np.zeros((5, 10), np.float32))


def test_a_model_on_another_schema_is_refused(trained: Trained, tmp_path: Path) -> None:
    path = export_head(trained.tfidf, tmp_path / "old.onnx", {"feature_schema": "nlp-sentiment-v0"})
    with pytest.raises(FeatureSchemaMismatch):
        SentimentModel.load(path)


def test_training_registers_and_promotes_a_champion(trained: Trained, tmp_path: Path) -> None:
    settings = MeshSettings.model_validate({"models": {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}",
                                                       "artifact_dir": str(tmp_path / "artifacts")}})
    registry = ModelRegistry(settings.models)
    grid = (Candidate("tfidf+minilm", 3.0, 1.0),)
    result = train_sentiment(trained.data, trained.embeddings, tmp_path / "out", grid, registry, settings)
    assert result.decision is not None and result.decision.promoted
    assert registry.version_of("nlp-sentiment", "champion") is not None
    assert result.metrics["val_macro_f1"] > result.metrics["val_macro_f1_majority"]
    assert result.path.is_file() and SentimentModel.load(result.path, embed=fake_embeddings).needs_embeddings
