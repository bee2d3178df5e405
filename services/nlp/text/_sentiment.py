"""Comment sentiment served from ONNX: negative / neutral / positive.

The ONNX graph (built by ``sentiment_train``) is the classifier head only; text goes in through up to three
inputs, named in the model's inputs and metadata:

- ``term_tf`` float32 [N, V]: sublinear term frequencies (1 + log count) of the lower-cased word 1-2 grams
  of the text over the vocabulary recorded in the metadata (``sentiment_vocabulary``, JSON); computed here
  in pure Python (:class:`TermFeaturizer`, the same tokens as scikit-learn's default ``token_pattern``).
  The graph multiplies by the IDF weights and L2-normalises.
- ``char_tf`` float32 [N, C]: the same for character 2-5 grams within words (scikit-learn's ``char_wb``),
  vocabulary in ``sentiment_char_vocabulary``; its own IDF and L2 normalisation in the graph.
- ``embedding`` float32 [N, 384]: the all-MiniLM-L6-v2 sentence embedding of the raw text
  (L2-normalised mean pooling, at most 256 word pieces: sentence-transformers' defaults for this model).
  The service feeds the output of its own ONNX embedder (``SentimentModel(..., embed=embedder)``).

Output ``probabilities`` float32 [N, 3] in :data:`LABELS` order.

>>> model = SentimentModel.load("sentiment.onnx", embed=embedder.encode)   # embed only if the model needs it
>>> model.predict_many(["This keeps failing. Not acceptable."])
[Sentiment(label='negative', score=-0.83, confidence=0.86, probabilities=(...))]
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mesh.config import ModelSettings
from mesh.models import FeatureSchema, ModelRunner, OnnxModel, check_feature_schema

Label = Literal["negative", "neutral", "positive"]
LABELS: tuple[Label, Label, Label] = ("negative", "neutral", "positive")
ORACLE_TO_INDEX = {-1: 0, 0: 1, 1: 2}
"""The datasets' oracle (-1/0/1) -> index into :data:`LABELS`."""
MODEL_NAME = "nlp-sentiment"
TERM_INPUT = "term_tf"
CHAR_INPUT = "char_tf"
EMBEDDING_INPUT = "embedding"
OUTPUT = "probabilities"
VOCABULARY_KEY = "sentiment_vocabulary"
NGRAM_KEY = "sentiment_ngram_max"
CHAR_VOCABULARY_KEY = "sentiment_char_vocabulary"
CHAR_NGRAMS = (2, 5)
SCHEMA = FeatureSchema("nlp-sentiment-v2", ("term_tf:word1-2gram-sublinear", "char_tf:char_wb2-5gram-sublinear",
                                            "embedding:all-MiniLM-L6-v2-256"))
"""Every input is described in the schema whichever a version uses, so a change of any is caught."""
_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_WHITE_SPACES = re.compile(r"\s\s+")

Embed = Callable[[Sequence[str]], npt.NDArray[Any]]
FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Sentiment:
    """One text's sentiment: ``score`` = P(positive) - P(negative) in [-1, 1]."""

    label: Label
    score: float
    confidence: float
    """probability of ``label``"""
    probabilities: tuple[float, float, float]
    """in :data:`LABELS` order"""


def word_ngrams(text: str, ngram_max: int) -> list[str]:
    """scikit-learn's word analyzer: lower-case, tokens of 2+ word characters, n-grams joined by a space."""
    tokens = _TOKEN.findall(text.lower())
    grams = list(tokens)
    for n in range(2, ngram_max + 1):
        grams += [" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return grams


def char_wb_ngrams(text: str, low: int = CHAR_NGRAMS[0], high: int = CHAR_NGRAMS[1]) -> list[str]:
    """scikit-learn's ``char_wb`` analyzer: lower-case, per word padded with one space, n-grams of
    ``low``..``high`` characters (a word shorter than n counted once)."""
    grams: list[str] = []
    for word in _WHITE_SPACES.sub(" ", text.lower()).split():
        w = f" {word} "
        for n in range(low, high + 1):
            offset = 0
            grams.append(w[offset:offset + n])
            while offset + n < len(w):
                offset += 1
                grams.append(w[offset:offset + n])
            if offset == 0:
                break
    return grams


class TermFeaturizer:
    """Texts -> sublinear term frequencies over a fixed vocabulary (the ``term_tf`` / ``char_tf`` inputs)."""

    def __init__(self, vocabulary: dict[str, int], ngram_max: int, analyzer: Literal["word", "char_wb"] = "word"
                 ) -> None:
        self.vocabulary = vocabulary
        self.ngram_max = ngram_max
        self.analyzer = analyzer

    def grams(self, text: str) -> list[str]:
        return word_ngrams(text, self.ngram_max) if self.analyzer == "word" else char_wb_ngrams(text)

    def transform(self, texts: Sequence[str]) -> FloatArray:
        out = np.zeros((len(texts), len(self.vocabulary)), dtype=np.float32)
        for row, text in enumerate(texts):
            counts: dict[int, int] = {}
            for gram in self.grams(text):
                index = self.vocabulary.get(gram)
                if index is not None:
                    counts[index] = counts.get(index, 0) + 1
            for index, count in counts.items():
                out[row, index] = 1.0 + math.log(count)
        return out

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], analyzer: Literal["word", "char_wb"] = "word"
                      ) -> TermFeaturizer:
        if analyzer == "word":
            return cls(json.loads(metadata[VOCABULARY_KEY]), int(metadata.get(NGRAM_KEY, "2")))
        return cls(json.loads(metadata[CHAR_VOCABULARY_KEY]), CHAR_NGRAMS[1], "char_wb")


class SentimentModel:
    """The sentiment head of one loaded ONNX version and what it needs to featurize text.

    With a hot-reloading registry model, build one per version: ``SentimentModel(source.current.model,
    embed)`` (the vocabulary is parsed once per file and cached).
    """

    def __init__(self, model: OnnxModel, embed: Embed | None = None, *, runner: ModelRunner | None = None) -> None:
        check_feature_schema(model.metadata, SCHEMA, model.path)
        self._runner: ModelRunner = runner or model
        self.inputs = model.input_names
        self._terms = _featurizer(model, "word") if TERM_INPUT in self.inputs else None
        self._chars = _featurizer(model, "char_wb") if CHAR_INPUT in self.inputs else None
        if EMBEDDING_INPUT in self.inputs and embed is None:
            raise ValueError(f"{model.path.name} reads MiniLM embeddings: pass embed= (the service's embedder)")
        self._embed = embed

    @classmethod
    def load(cls, path: str | Path, embed: Embed | None = None, settings: ModelSettings | None = None
             ) -> SentimentModel:
        return cls(OnnxModel.load(path, settings or ModelSettings.model_validate({}), warm_up=False), embed)

    @property
    def needs_embeddings(self) -> bool:
        return EMBEDDING_INPUT in self.inputs

    def features(self, texts: Sequence[str], embeddings: npt.NDArray[Any] | None = None) -> dict[str, FloatArray]:
        """The model's inputs for ``texts`` (``embeddings`` given: used instead of calling ``embed``)."""
        inputs: dict[str, FloatArray] = {}
        if self._terms is not None:
            inputs[TERM_INPUT] = self._terms.transform(texts)
        if self._chars is not None:
            inputs[CHAR_INPUT] = self._chars.transform(texts)
        if self.needs_embeddings:
            if embeddings is None:
                assert self._embed is not None
                embeddings = self._embed(texts)
            if embeddings.shape != (len(texts), 384):
                raise ValueError(f"expected {len(texts)} embeddings of 384 floats, got shape {embeddings.shape}")
            inputs[EMBEDDING_INPUT] = np.asarray(embeddings, dtype=np.float32)
        return inputs

    def probabilities(self, texts: Sequence[str], embeddings: npt.NDArray[Any] | None = None) -> FloatArray:
        if not texts:
            return np.zeros((0, 3), dtype=np.float32)
        return np.asarray(self._runner.run(self.features(texts, embeddings))[OUTPUT], dtype=np.float32)

    def predict_many(self, texts: Sequence[str], embeddings: npt.NDArray[Any] | None = None) -> list[Sentiment]:
        """One :class:`Sentiment` per text, in order."""
        return [to_sentiment(row) for row in self.probabilities(texts, embeddings)]


def to_sentiment(probabilities: npt.NDArray[Any]) -> Sentiment:
    p = tuple(float(x) for x in probabilities)
    best = int(np.argmax(probabilities))
    return Sentiment(LABELS[best], round(p[2] - p[0], 6), p[best], (p[0], p[1], p[2]))


_featurizers: dict[tuple[str, int, int], TermFeaturizer] = {}


def _featurizer(model: OnnxModel, analyzer: Literal["word", "char_wb"]) -> TermFeaturizer:
    vocabulary = model.metadata.get(VOCABULARY_KEY if analyzer == "word" else CHAR_VOCABULARY_KEY, "")
    key = (analyzer, hash(vocabulary), len(vocabulary))  # a str caches its hash: cheap on one loaded model
    if key not in _featurizers:
        _featurizers[key] = TermFeaturizer.from_metadata(model.metadata, analyzer)
    return _featurizers[key]
