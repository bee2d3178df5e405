"""mesh.serving.tune_gc: the start-up heap frozen, thresholds set, every later collection timed."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from mesh.serving import gc_stats, tune_gc


@pytest.fixture
def restore_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restore_gc")
def test_tune_gc_freezes_the_heap_sets_thresholds_and_times_collections() -> None:
    start_up = [{"i": i} for i in range(10_000)]  # a start-up heap: containers that live for good
    monitor = tune_gc(thresholds=(5_000, 7, 9))
    assert gc.get_freeze_count() >= len(start_up)
    assert gc.get_threshold() == (5_000, 7, 9)
    before = monitor.stats().collections
    for _ in range(3):
        gc.collect(0)
    stats = gc_stats()
    assert stats is not None and stats.collections >= before + 3
    assert stats.pause_max_ms >= stats.pause_p99_ms >= stats.pause_p50_ms >= 0.0
    assert tune_gc(thresholds=(5_000, 7, 9)) is monitor  # one monitor per process
