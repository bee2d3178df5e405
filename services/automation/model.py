"""Serving side of the next-action model: its exported ONNX graph (no torch), with its vocabulary in the
graph's metadata, scoring what comes next after a prefix of tokens."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mesh.config import ModelSettings
from mesh.errors import Unavailable
from mesh.models import FeatureSchema, ModelSource, OnnxModel, stamp_metadata
from services.automation.process_log import N_TIME_FEATURES, Vocabulary, pad

VOCAB_KEY = "automation.vocabulary"


def save_vocabulary(path: Path, vocab: Vocabulary) -> None:
    """Write the vocabulary and the input schema into the ONNX file's metadata (model and tokens travel
    together)."""
    stamp_metadata(path, {VOCAB_KEY: json.dumps(list(vocab.tokens)), **SCHEMA.metadata()})


class NextActionModel:
    """Next-token probabilities over token prefixes, through ONNX Runtime."""

    def __init__(self, onnx: OnnxModel) -> None:
        raw = onnx.metadata.get(VOCAB_KEY)
        if raw is None:
            raise ValueError(f"{onnx.path}: no {VOCAB_KEY} metadata (not a next-action model)")
        self.onnx = onnx
        self.vocab = Vocabulary(tuple(json.loads(raw)))

    @classmethod
    def load(cls, path: Path, settings: ModelSettings | None = None) -> NextActionModel:
        return cls(OnnxModel.load(path, settings or ModelSettings.model_validate({})))

    def probabilities(self, prefixes: Sequence[Sequence[str]]) -> np.ndarray[Any, Any]:
        """[len(prefixes), vocab] next-token probabilities (time features zero: action sequences)."""
        items = [([self.vocab.id(t) for t in p], np.zeros((len(p), N_TIME_FEATURES), np.float32), 0)
                 for p in prefixes]
        batch = pad(items)
        logits = self.onnx.run({"activities": batch.activities, "times": batch.times})["next_logits"]
        z = np.exp(logits - logits.max(axis=1, keepdims=True))
        return np.asarray(z / z.sum(axis=1, keepdims=True))

    def token_id(self, token: str) -> int:
        """The token's id (0 when the model never saw it)."""
        return self.vocab.id(token)


SCHEMA = FeatureSchema("automation-next-action-v1", ("activities", "times"))
"""The inputs of the next-action model (token ids and time features, left-padded)."""


class VersionedScorer:
    """The next-action model of a :class:`~mesh.models.ModelSource`'s current version (the reloading
    champion in the service), with its vocabulary; one wrapper per loaded version."""

    def __init__(self, source: ModelSource) -> None:
        self._source = source
        self._cache: tuple[str, NextActionModel] | None = None

    def snapshot(self) -> tuple[str, NextActionModel] | None:
        """(version, model) to score one pass with; None while no version is loaded."""
        try:
            current = self._source.current
        except Unavailable:
            return None
        if self._cache is None or self._cache[0] != current.version:
            self._cache = (current.version, NextActionModel(current.model))
        return self._cache
