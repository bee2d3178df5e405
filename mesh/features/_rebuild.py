"""Rebuilding an aggregate store (a service's private state) from the offline event log and the retained
input topics, then marking it built.

Kafka (and the event log written from it) is the source of truth and Redis its cache: when a store's
built marker is missing (first start, or a Redis restart that lost the data) the service replays its
inputs through the same :meth:`AggregateStore.apply` it uses live. The reducers are order-independent and
each event is applied once (applied-marks), so sources may overlap each other and the live stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh.config import KafkaSettings, MeshSettings
from mesh.errors import Unavailable, translate_infra_errors
from mesh.events import Envelope, TopicRegistry
from mesh.features._aggregates import AggregateStore, Applied, StateMissing
from mesh.features._eventlog import EventLog, LoggedEvent
from mesh.features._replay import TopicReader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rebuilt:
    """What a rebuild read and applied."""

    events: int
    applied: int
    seconds: float


def rebuild(store: AggregateStore, sources: Iterable[Iterable[Envelope | LoggedEvent]], *,
            batch_size: int = 500) -> Rebuilt:
    """Apply every event of every source (only the types the store's reducers handle), then mark built."""
    started, wanted = time.perf_counter(), set(store.reducers.event_types)
    events = applied = 0
    batch: list[Envelope] = []
    for source in sources:
        for item in source:
            env = item.envelope if isinstance(item, LoggedEvent) else item
            events += 1
            if env.type in wanted:
                batch.append(env)
            if len(batch) >= batch_size:
                applied += store.apply(batch).applied
                batch = []
    applied += store.apply(batch).applied
    store.mark_built()
    return Rebuilt(events, applied, time.perf_counter() - started)


def rebuild_from_inputs(store: AggregateStore, kafka: KafkaSettings, topics: Sequence[str],
                        event_log_dir: Path | None = None, *, batch_size: int = 500) -> Rebuilt:
    """Rebuild from the event log (when there is one) and the retained part of ``topics`` (physical
    names), each read up to its end at the time of the call; the live consumer applies anything newer."""
    sources: list[Iterable[LoggedEvent]] = []
    if event_log_dir is not None and event_log_dir.exists():
        sources.append(EventLog(event_log_dir).read())
    sources.extend(TopicReader(kafka, topic) for topic in topics)
    try:
        with translate_infra_errors(f"rebuilding {store.reducers.name} state"):
            done = rebuild(store, sources, batch_size=batch_size)
    except (RuntimeError, TimeoutError) as exc:  # a topic not there (yet), a broker not answering: retry later
        raise Unavailable(f"rebuilding {store.reducers.name} state from {list(topics)}: {exc}") from exc
    log.info("rebuilt %s state: %d events read, %d applied in %.1fs (log %s, topics %s)", store.reducers.name,
             done.events, done.applied, done.seconds, event_log_dir, list(topics))
    return done


class Rebuilder:
    """A service's rebuild: its store, from the event log and its retained input topics. Call it (or
    :meth:`ensure_built` at start) to rebuild; :meth:`apply` is the live path that rebuilds when the
    state turns out to be missing."""

    def __init__(self, store: AggregateStore, kafka: KafkaSettings, topics: Sequence[str],
                 event_log_dir: Path | None = None) -> None:
        self.store = store
        self._kafka = kafka
        self._topics = list(topics)
        self._log_dir = event_log_dir

    @classmethod
    def of(cls, store: AggregateStore, settings: MeshSettings, logical_topics: Sequence[str],
           event_log_dir: Path | None = None) -> Rebuilder:
        """For a service's input topics by logical name (the settings' topic prefix applied)."""
        registry = TopicRegistry(settings.kafka.topic_prefix)
        return cls(store, settings.kafka, [registry.physical(t) for t in logical_topics], event_log_dir)

    def __call__(self) -> Rebuilt:
        return rebuild_from_inputs(self.store, self._kafka, self._topics, self._log_dir)

    def ensure_built(self) -> Rebuilt | None:
        """Rebuild unless the state is built; what the rebuild did (None: nothing to do)."""
        return None if self.store.built() else self()

    def apply(self, events: Sequence[Envelope]) -> Applied:
        """Apply to the built state; when it is missing (never built, or lost with a Redis restart),
        rebuild first, then apply. Each event still counts once: the rebuild may include them."""
        return apply_rebuilding(self.store, events, self)


def apply_rebuilding(store: AggregateStore, events: Sequence[Envelope],
                     rebuild: Callable[[], object] | None) -> Applied:
    """``store.apply(events, require_built=True)``; on :class:`StateMissing` run ``rebuild`` and apply
    again. Without a rebuild the StateMissing propagates (an Unavailable: the bus retries the batch)."""
    try:
        return store.apply(events, require_built=True)
    except StateMissing:
        if rebuild is None:
            raise
        log.warning("%s state is missing (lost with a Redis restart?): rebuilding before going on",
                    store.reducers.name)
        rebuild()
        return store.apply(events, require_built=True)
