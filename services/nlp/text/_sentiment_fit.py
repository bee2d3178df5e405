"""Training side of comment sentiment (scikit-learn; never imported by serving): the datasets, the
candidate models, model choice on validation folds, and the export of the chosen head to ONNX.

Candidates (all multinomial logistic regression, so the head is one Gemm + Softmax in ONNX):
- ``tfidf``: sublinear TF-IDF of word 1-2 grams (the baseline family);
- ``minilm``: the all-MiniLM-L6-v2 sentence embedding;
- ``tfidf+minilm``: both, the embedding block scaled by ``alpha`` against the L2-normalised TF-IDF block;
- with ``chars``: a second TF-IDF block over character 2-5 grams within words.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from services.nlp.text._sentiment import (
    CHAR_INPUT,
    CHAR_NGRAMS,
    CHAR_VOCABULARY_KEY,
    EMBEDDING_INPUT,
    NGRAM_KEY,
    ORACLE_TO_INDEX,
    OUTPUT,
    SCHEMA,
    TERM_INPUT,
    VOCABULARY_KEY,
)

log = logging.getLogger(__name__)
Features = Literal["tfidf", "minilm", "tfidf+minilm"]
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
DATASETS = ("jira", "github")


@dataclass(frozen=True)
class SentimentData:
    """One labelled set: texts, labels (index into LABELS) and the dataset's own fold (0-9) per text."""

    name: str
    texts: tuple[str, ...]
    labels: IntArray
    folds: IntArray

    def take(self, index: IntArray) -> SentimentData:
        return SentimentData(self.name, tuple(self.texts[i] for i in index), self.labels[index], self.folds[index])


def load_sentiment_csv(path: Path, limit_per_fold: int | None = None) -> SentimentData:
    """``id,dataset,text,oracle`` (oracle -1/0/1; ``dataset`` ends with the fold number)."""
    texts: list[str] = []
    labels: list[int] = []
    folds: list[int] = []
    seen: dict[int, int] = {}
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            fold = int(row["dataset"].rsplit("_", 1)[-1])
            if limit_per_fold is not None and seen.get(fold, 0) >= limit_per_fold:
                continue
            seen[fold] = seen.get(fold, 0) + 1
            texts.append(row["text"])
            labels.append(ORACLE_TO_INDEX[int(row["oracle"])])
            folds.append(fold)
    if not texts:
        raise ValueError(f"{path}: no rows")
    return SentimentData(path.stem, tuple(texts), np.asarray(labels, dtype=np.int64),
                         np.asarray(folds, dtype=np.int64))


@dataclass(frozen=True)
class Candidate:
    features: Features
    c: float
    """inverse regularisation strength of the logistic regression"""
    alpha: float = 1.0
    """scale of the embedding block (``tfidf+minilm`` only)"""
    balanced: bool = True
    chars: bool = False
    """add TF-IDF of character 2-5 grams within words (its own L2-normalised block; not for ``minilm``)"""

    @property
    def name(self) -> str:
        alpha = f",a={self.alpha:g}" if self.features == "tfidf+minilm" else ""
        features = self.features.replace("tfidf", "tfidf+char") if self.chars else self.features
        return f"{features}+lr(C={self.c:g}{alpha}{',bal' if self.balanced else ''})"


DEFAULT_GRID: tuple[Candidate, ...] = (
    Candidate("tfidf", 1.0), Candidate("tfidf", 3.0), Candidate("minilm", 1.0),
    Candidate("tfidf+minilm", 1.0, 1.0), Candidate("tfidf+minilm", 3.0, 1.0),
    Candidate("tfidf+minilm", 1.0, 1.0, chars=True),
)
"""Chosen from a wider grid (C up to 30, alpha up to 3) on Jira folds 2-9 -> validation fold 1: larger C and
alpha only lost there; character n-grams gained on Jira and GitHub validation folds."""
QUICK_GRID: tuple[Candidate, ...] = (Candidate("tfidf", 3.0), Candidate("tfidf+minilm", 1.0, 1.0, chars=True))
MAX_CHAR_FEATURES = 50_000
BASELINE = Candidate("tfidf", 3.0)
"""The TF-IDF + logistic regression baseline reported beside the chosen model."""


@dataclass
class FittedSentiment:
    """A fitted candidate: the vectorizer (when it reads terms), the regression, the embedding scale."""

    candidate: Candidate
    vectorizer: Any
    regression: Any
    char_vectorizer: Any = None

    def design(self, texts: Sequence[str], embeddings: FloatArray | None) -> Any:
        from scipy import sparse  # type: ignore[import-untyped]

        blocks: list[Any] = []
        if self.vectorizer is not None:
            blocks.append(self.vectorizer.transform(texts))
        if self.char_vectorizer is not None:
            blocks.append(self.char_vectorizer.transform(texts))
        if self.candidate.features != "tfidf":
            assert embeddings is not None
            blocks.append(sparse.csr_matrix(embeddings * self.candidate.alpha) if blocks
                          else embeddings * self.candidate.alpha)
        return sparse.hstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]

    def predict_proba(self, texts: Sequence[str], embeddings: FloatArray | None) -> FloatArray:
        return np.asarray(self.regression.predict_proba(self.design(texts, embeddings)), dtype=np.float32)


def fit(candidate: Candidate, texts: Sequence[str], embeddings: FloatArray | None, labels: IntArray,
        ) -> FittedSentiment:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = None
    if candidate.features != "minilm":
        vectorizer = TfidfVectorizer(lowercase=True, ngram_range=(1, 2), min_df=2, sublinear_tf=True,
                                     dtype=np.float32)
        vectorizer.fit(texts)
    chars = None
    if candidate.chars and candidate.features != "minilm":
        chars = TfidfVectorizer(lowercase=True, analyzer="char_wb", ngram_range=CHAR_NGRAMS, min_df=2,
                                sublinear_tf=True, max_features=MAX_CHAR_FEATURES, dtype=np.float32)
        chars.fit(texts)
    fitted = FittedSentiment(candidate, vectorizer, None, chars)
    regression = LogisticRegression(C=candidate.c, max_iter=2000,
                                    class_weight="balanced" if candidate.balanced else None)
    regression.fit(fitted.design(texts, embeddings), labels)
    if list(regression.classes_) != [0, 1, 2]:
        raise ValueError(f"training labels must cover negative, neutral and positive (got {regression.classes_})")
    fitted.regression = regression
    return fitted


def macro_f1(labels: IntArray, predicted: IntArray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(labels, predicted, average="macro", labels=[0, 1, 2], zero_division=0))


def majority_f1(train_labels: IntArray, test_labels: IntArray) -> float:
    """Macro-F1 of always answering the training set's most frequent class."""
    majority = int(np.bincount(train_labels, minlength=3).argmax())
    return macro_f1(test_labels, np.full(len(test_labels), majority))


@dataclass(frozen=True)
class Choice:
    best: Candidate
    val_f1: dict[str, float]
    """validation macro-F1 of every candidate, by name"""
    fitted: dict[str, FittedSentiment]
    """every candidate fitted on train, by name (only with ``keep_fitted``)"""


def choose(grid: Sequence[Candidate], data: SentimentData, embeddings: FloatArray, train: IntArray,
           val: IntArray, *, keep_fitted: bool = False) -> Choice:
    """The candidate with the best macro-F1 on ``val`` after fitting on ``train`` (ties: earlier wins)."""
    scores: dict[str, float] = {}
    kept: dict[str, FittedSentiment] = {}
    best, best_f1 = grid[0], -1.0
    texts = data.texts
    for candidate in grid:
        fitted = fit(candidate, [texts[i] for i in train], embeddings[train], data.labels[train])
        f1 = macro_f1(data.labels[val], fitted.predict_proba([texts[i] for i in val], embeddings[val]).argmax(1))
        scores[candidate.name] = f1
        if keep_fitted:
            kept[candidate.name] = fitted
        log.info("  %s: validation macro-F1 %.3f", candidate.name, f1)
        if f1 > best_f1:
            best, best_f1 = candidate, f1
    return Choice(best, scores, kept)


def export_head(fitted: FittedSentiment, path: Path, extra_metadata: dict[str, str] | None = None) -> Path:
    """The fitted head as ONNX (opset 17): IDF x sublinear tf, L2 norm, concat scaled embedding, Gemm, Softmax.
    Inputs are ``term_tf`` and/or ``embedding`` (see ``_sentiment``), output ``probabilities``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    inputs: list[Any] = []
    parts: list[str] = []
    meta = dict(SCHEMA.metadata())
    if fitted.vectorizer is not None:
        vocabulary = {str(k): int(v) for k, v in fitted.vectorizer.vocabulary_.items()}
        size = len(vocabulary)
        inputs.append(helper.make_tensor_value_info(TERM_INPUT, TensorProto.FLOAT, ["batch", size]))
        inits += [numpy_helper.from_array(np.asarray(fitted.vectorizer.idf_, np.float32), "idf"),
                  numpy_helper.from_array(np.asarray([1e-12], np.float32), "eps")]
        nodes += [helper.make_node("Mul", [TERM_INPUT, "idf"], ["weighted"]),
                  helper.make_node("ReduceL2", ["weighted"], ["norm"], axes=[1], keepdims=1),
                  helper.make_node("Max", ["norm", "eps"], ["safe_norm"]),
                  helper.make_node("Div", ["weighted", "safe_norm"], ["tfidf"])]
        parts.append("tfidf")
        meta[VOCABULARY_KEY] = json.dumps(vocabulary, separators=(",", ":"))
        meta[NGRAM_KEY] = "2"
    if fitted.char_vectorizer is not None:
        chars = {str(k): int(v) for k, v in fitted.char_vectorizer.vocabulary_.items()}
        inputs.append(helper.make_tensor_value_info(CHAR_INPUT, TensorProto.FLOAT, ["batch", len(chars)]))
        inits += [numpy_helper.from_array(np.asarray(fitted.char_vectorizer.idf_, np.float32), "char_idf"),
                  numpy_helper.from_array(np.asarray([1e-12], np.float32), "char_eps")]
        nodes += [helper.make_node("Mul", [CHAR_INPUT, "char_idf"], ["char_weighted"]),
                  helper.make_node("ReduceL2", ["char_weighted"], ["char_norm"], axes=[1], keepdims=1),
                  helper.make_node("Max", ["char_norm", "char_eps"], ["char_safe_norm"]),
                  helper.make_node("Div", ["char_weighted", "char_safe_norm"], ["char_tfidf"])]
        parts.append("char_tfidf")
        meta[CHAR_VOCABULARY_KEY] = json.dumps(chars, separators=(",", ":"))
    if fitted.candidate.features != "tfidf":
        inputs.append(helper.make_tensor_value_info(EMBEDDING_INPUT, TensorProto.FLOAT, ["batch", 384]))
        inits.append(numpy_helper.from_array(np.asarray([fitted.candidate.alpha], np.float32), "alpha"))
        nodes.append(helper.make_node("Mul", [EMBEDDING_INPUT, "alpha"], ["scaled_embedding"]))
        parts.append("scaled_embedding")
    if len(parts) > 1:
        nodes.append(helper.make_node("Concat", parts, ["design"], axis=1))
    design = "design" if len(parts) > 1 else parts[0]
    inits += [numpy_helper.from_array(np.asarray(fitted.regression.coef_, np.float32), "coef"),
              numpy_helper.from_array(np.asarray(fitted.regression.intercept_, np.float32), "intercept")]
    nodes += [helper.make_node("Gemm", [design, "coef", "intercept"], ["logits"], transB=1),
              helper.make_node("Softmax", ["logits"], [OUTPUT], axis=1)]
    graph = helper.make_graph(nodes, "sentiment_head", inputs,
                              [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sunday-ml")
    model.ir_version = 8
    meta.update({"sentiment_candidate": fitted.candidate.name, **(extra_metadata or {})})
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def verify_export(fitted: FittedSentiment, path: Path, texts: Sequence[str], embeddings: FloatArray | None,
                  tolerance: float = 1e-4) -> float:
    """Largest |ONNX - scikit-learn| probability over batches of 1 and of ``len(texts)``; ValueError when
    above ``tolerance`` (the pure-Python featurizer and the graph must reproduce the fitted pipeline)."""
    from mesh.models import ExportVerificationError
    from services.nlp.text._sentiment import SentimentModel

    model = SentimentModel.load(path, embed=(lambda _: np.zeros((0, 384), np.float32))
                                if fitted.candidate.features != "tfidf" else None)
    worst = 0.0
    for size in (1, len(texts)):
        emb = embeddings[:size] if embeddings is not None else None
        got = model.probabilities(texts[:size], emb)
        want = fitted.predict_proba(texts[:size], emb)
        worst = max(worst, float(np.max(np.abs(got - want))))
    if worst > tolerance:
        raise ExportVerificationError(f"{path.name}: ONNX differs from scikit-learn by {worst:.2e} "
                                      f"(tolerance {tolerance:.0e})")
    return worst
