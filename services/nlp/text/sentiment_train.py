"""`python -m services.nlp.text.sentiment_train [--data DIR] [--quick] [--out DIR] [--no-register]`:
comment sentiment from the labelled Jira and GitHub comments (``../shared/data/sentiment``).

Split by the datasets' own folds, both datasets together: fold 0 = held-out test, fold 1 = validation,
folds 2-9 = train. Every candidate (``_sentiment_fit.DEFAULT_GRID``: TF-IDF, MiniLM embeddings, both) is
fitted on train and scored on validation; the best (macro-F1) is scored beside the majority class and the
TF-IDF + logistic regression baseline on validation and test, exported to ONNX, verified against
scikit-learn at batch 1 and 64, registered as ``nlp-sentiment`` (``challenger``) and promoted to
``champion`` only when it beats the current champion re-scored on the same validation fold.

Training embeds the texts with sentence-transformers (torch; cached under ``.cache/nlp_text``); serving
needs only the ONNX head and the service's ONNX embedder.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mesh.config import MeshSettings
from mesh.models import (
    Challenger,
    ModelRegistry,
    Objective,
    PromotionDecision,
    VersionedModel,
    register_and_promote,
)
from services.nlp.text._embed_train import MiniLM
from services.nlp.text._sentiment import MODEL_NAME, SCHEMA, SentimentModel
from services.nlp.text._sentiment_fit import (
    BASELINE,
    DATASETS,
    DEFAULT_GRID,
    QUICK_GRID,
    Candidate,
    FloatArray,
    IntArray,
    SentimentData,
    choose,
    export_head,
    fit,
    load_sentiment_csv,
    macro_f1,
    majority_f1,
    verify_export,
)

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[3]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "sentiment"
CACHE_DIR = REPO / ".cache" / "nlp_text"
METRIC = "val_macro_f1"
TEST_FOLD, VAL_FOLD = 0, 1
DATA_TIME_RANGE = (datetime(2009, 1, 1, tzinfo=UTC), datetime(2019, 1, 1, tzinfo=UTC))
"""The comments' era (the sets carry no per-comment time): what the version is registered with."""


@dataclass(frozen=True)
class TrainedSentiment:
    path: Path
    candidate: Candidate
    metrics: dict[str, float]
    decision: PromotionDecision | None


def load_parts(data_dir: Path, limit_per_fold: int | None = None) -> list[SentimentData]:
    """Jira and GitHub (those present in ``data_dir``)."""
    parts = [load_sentiment_csv(data_dir / f"{name}.csv", limit_per_fold) for name in DATASETS
             if (data_dir / f"{name}.csv").is_file()]
    if not parts:
        raise SystemExit(f"no jira.csv or github.csv in {data_dir}")
    return parts


def join(parts: list[SentimentData]) -> SentimentData:
    """The sets together (each comment keeps its own fold number)."""
    return SentimentData("+".join(p.name for p in parts), tuple(t for p in parts for t in p.texts),
                         np.concatenate([p.labels for p in parts]), np.concatenate([p.folds for p in parts]))


def train_sentiment(data: SentimentData, embeddings: FloatArray, out: Path, grid: tuple[Candidate, ...],
                    registry: ModelRegistry | None, settings: MeshSettings) -> TrainedSentiment:
    test = np.flatnonzero(data.folds == TEST_FOLD)
    val = np.flatnonzero(data.folds == VAL_FOLD)
    train = np.flatnonzero(~np.isin(data.folds, [TEST_FOLD, VAL_FOLD]))
    log.info("sentiment: %d train, %d validation, %d test comments; choosing among %d candidates",
             len(train), len(val), len(test), len(grid))
    choice = choose(grid, data, embeddings, train, val)
    best = choice.best
    fitted = fit(best, _texts(data, train), embeddings[train], data.labels[train])
    baseline = fitted if best == BASELINE else fit(BASELINE, _texts(data, train), embeddings[train],
                                                   data.labels[train])

    def score(model_fit: object, idx: IntArray) -> float:
        assert hasattr(model_fit, "predict_proba")
        return macro_f1(data.labels[idx], model_fit.predict_proba(_texts(data, idx), embeddings[idx]).argmax(1))

    metrics = {METRIC: score(fitted, val), "test_macro_f1": score(fitted, test),
               "val_macro_f1_tfidf_lr": score(baseline, val), "test_macro_f1_tfidf_lr": score(baseline, test),
               "val_macro_f1_majority": majority_f1(data.labels[train], data.labels[val]),
               "test_macro_f1_majority": majority_f1(data.labels[train], data.labels[test])}
    log.info("sentiment: chose %s; %s", best.name, {k: round(v, 3) for k, v in metrics.items()})
    path = export_head(fitted, out / "sentiment.onnx")
    sample = test[:64]
    verify_export(fitted, path, _texts(data, sample), embeddings[sample])
    if registry is None:
        return TrainedSentiment(path, best, metrics, None)
    val_texts, val_emb, val_labels = _texts(data, val), embeddings[val], data.labels[val]

    def rescore(version: VersionedModel) -> float:
        model = SentimentModel(version.model, embed=_unused_embed)
        return macro_f1(val_labels, model.probabilities(val_texts, val_emb).argmax(1))

    challenger = Challenger(MODEL_NAME, path, SCHEMA, metrics, {"candidate": best.name, "grid": len(grid)},
                            DATA_TIME_RANGE)
    decision = register_and_promote(registry, challenger, Objective(METRIC, True, rescore), settings.models)
    log.info("sentiment: %s", decision.summary())
    return TrainedSentiment(path, best, metrics, decision)


def _unused_embed(texts: object) -> FloatArray:
    raise AssertionError("embeddings are passed explicitly while training")


def _texts(data: SentimentData, idx: IntArray) -> list[str]:
    return [data.texts[i] for i in idx]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with jira.csv / github.csv")
    parser.add_argument("--quick", action="store_true", help="a smaller candidate grid")
    parser.add_argument("--limit-per-fold", type=int, default=None, help="at most this many comments per fold")
    parser.add_argument("--out", type=Path, default=None, help="where the ONNX file goes (default: a temp dir)")
    parser.add_argument("--no-register", action="store_true", help="export only; no MLflow")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = MeshSettings()
    parts = load_parts(args.data, args.limit_per_fold)
    data = join(parts)
    embedder = MiniLM(CACHE_DIR)  # per dataset: the benchmark's cached files are reused
    embeddings = np.concatenate([embedder.encode(p.texts) for p in parts])
    out = args.out or Path(tempfile.mkdtemp(prefix="nlp-sentiment-"))
    registry = None if args.no_register else ModelRegistry(settings.models)
    trained = train_sentiment(data, embeddings, out, QUICK_GRID if args.quick else DEFAULT_GRID, registry,
                              settings)
    print(f"{trained.candidate.name}: " + ", ".join(f"{k}={v:.3f}" for k, v in trained.metrics.items()))
    print(f"model: {trained.path}" + (f"; {trained.decision.summary()}" if trained.decision else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
