"""Training-time sentence embeddings: all-MiniLM-L6-v2 through sentence-transformers (torch), cached on disk.

Serving never imports this module: the service feeds the sentiment head the output of its own ONNX export
of the same model (L2-normalised mean pooling, max 256 word pieces), which matches sentence-transformers
to ~1e-7.
"""

from __future__ import annotations

from pathlib import Path

from mesh.models._minilm import CachedMiniLM

EMBEDDING_DIM = 384
MAX_SEQ_LENGTH = 256


class MiniLM(CachedMiniLM):
    """The shared cached MiniLM (:class:`mesh.models._minilm.CachedMiniLM`) at the service's sequence limit."""

    def __init__(self, cache_dir: Path | None = None, batch_size: int = 64) -> None:
        super().__init__(cache_dir, MAX_SEQ_LENGTH, batch_size)
