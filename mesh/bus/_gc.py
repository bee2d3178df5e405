"""The collector while a consumer runs: a backlog batch allocates hundreds of thousands of objects, and
CPython's defaults (a young collection every 700 allocations, full ones scanning every object alive,
the imported libraries included) cost the feature ingestion more than its reducers: measured on a
20,790-event backlog, two full collections took ~2.2 s of a ~7 s run.

While at least one :class:`~mesh.bus.ConsumerRunner` runs in the process, :func:`consuming` keeps:
- the heap that existed when the first one started (modules, models, settings) frozen (``gc.freeze``):
  it stays alive anyway, and full collections no longer scan it;
- a higher young-generation threshold (``gen0``), so that a batch is not collected hundreds of times
  while it is built. Cycles are still collected, only less often.
When the last runner leaves, the thresholds are restored and, unless something else had frozen the heap
before (a service's :func:`mesh.serving.tune_gc`), the frozen heap is handed back to the collector.
Services already tune the collector at start-up; this is for every other consumer process (the feature
ingestion, backfills, benchmarks, tests). Nothing else changes: reference counting frees acyclic garbage
at once, as always.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_users = 0
_saved: tuple[int, int, int] | None = None
_unfreeze = False


@contextlib.contextmanager
def consuming(gen0: int | None, freeze: bool) -> Iterator[None]:
    """Collector settings for the duration of a run (nested and concurrent runs share them)."""
    global _users, _saved, _unfreeze
    if gen0 is None and not freeze:
        yield
        return
    with _lock:
        _users += 1
        if _users == 1:
            _saved = gc.get_threshold()
            if gen0 is not None and gen0 > _saved[0]:
                gc.set_threshold(gen0, *_saved[1:])
            if freeze:
                _unfreeze = gc.get_freeze_count() == 0
                gc.freeze()
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                if _unfreeze:
                    gc.unfreeze()
                _saved, _unfreeze = None, False
