"""Independent, reproducible random streams: one per (seed, purpose, index), never global state."""

from __future__ import annotations

import uuid
import zlib

import numpy as np


def rng_for(seed: int, purpose: str, *index: int) -> np.random.Generator:
    """A generator for one purpose; adding draws in one stream never shifts another stream."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(purpose.encode()), *index]))


class IdSource:
    """Deterministic UUIDs (version 4 layout) drawn in blocks from a seeded stream."""

    def __init__(self, rng: np.random.Generator, block: int = 4096) -> None:
        self._rng = rng
        self._block = block
        self._buf = b""
        self._pos = 0

    def next(self) -> str:
        if self._pos >= len(self._buf):
            self._buf = self._rng.bytes(16 * self._block)
            self._pos = 0
        raw = self._buf[self._pos:self._pos + 16]
        self._pos += 16
        return str(uuid.UUID(bytes=raw, version=4))
