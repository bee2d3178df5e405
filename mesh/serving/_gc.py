"""The garbage collector of a serving process: the start-up heap frozen, thresholds raised, pauses measured.

A service imports and loads a lot before it serves (protobuf descriptors, ONNX sessions, Feast, pydantic
models); with the default thresholds every full collection walks all of it again (measured on the
assignment service: ~220 ms every ~1.4 s under load). :func:`tune_gc` is called once by
:func:`mesh.serving.run_service` after the service has built everything and before it takes traffic:
``gc.freeze()`` moves the start-up heap out of every later collection, and higher thresholds make the
collections of what requests allocate rarer. Pauses are measured with ``gc.callbacks`` and exported as
``mesh_gc_pause_seconds`` (histogram, by generation) on the service's /metrics.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import Histogram

log = logging.getLogger(__name__)

GC_PAUSE = Histogram("mesh_gc_pause_seconds", "Garbage collection pauses of the process", ("generation",),
                     buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0))

DEFAULT_THRESHOLDS = (10_000, 10, 10)
"""gen0 every 10k net container allocations instead of 700 (each young collection stays well under a
millisecond); gen1/gen2 in proportion. The frozen start-up heap is never walked again either way."""


@dataclass(frozen=True)
class GcStats:
    """What the collector did since :func:`tune_gc` (or the monitor's start)."""

    collections: int
    per_minute: float
    pause_p50_ms: float
    pause_p99_ms: float
    pause_max_ms: float
    frozen_objects: int


class GcMonitor:
    """Times every collection through ``gc.callbacks`` (the last ``keep`` pauses are kept)."""

    def __init__(self, keep: int = 100_000) -> None:
        self._pauses: deque[float] = deque(maxlen=keep)
        self._count = 0
        self._started_at = time.monotonic()
        self._begin = 0.0
        self._lock = threading.Lock()

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._begin = time.perf_counter()
            return
        pause = time.perf_counter() - self._begin
        with self._lock:
            self._pauses.append(pause)
            self._count += 1
        GC_PAUSE.labels(str(info.get("generation", "?"))).observe(pause)

    def stats(self) -> GcStats:
        with self._lock:
            pauses = np.asarray(self._pauses) * 1000.0
            count = self._count
        minutes = max(time.monotonic() - self._started_at, 1e-9) / 60.0
        if not len(pauses):
            return GcStats(count, count / minutes, 0.0, 0.0, 0.0, gc.get_freeze_count())
        return GcStats(count, count / minutes, float(np.percentile(pauses, 50)), float(np.percentile(pauses, 99)),
                       float(pauses.max()), gc.get_freeze_count())


_monitor: GcMonitor | None = None


def tune_gc(*, freeze: bool = True, thresholds: tuple[int, int, int] = DEFAULT_THRESHOLDS) -> GcMonitor:
    """Collect once, freeze what is left (the start-up heap), set ``thresholds``, and measure every later
    collection; call it once the process has loaded everything it serves with. Idempotent: a second call
    freezes what was allocated since and keeps the one monitor."""
    global _monitor
    gc.collect()
    if freeze:
        gc.freeze()
    gc.set_threshold(*thresholds)
    if _monitor is None:
        _monitor = GcMonitor()
        gc.callbacks.append(_monitor)
    log.info("gc tuned: %d objects frozen, thresholds %s", gc.get_freeze_count(), thresholds)
    return _monitor


def gc_stats() -> GcStats | None:
    """The monitor's figures (None before :func:`tune_gc`)."""
    return None if _monitor is None else _monitor.stats()
