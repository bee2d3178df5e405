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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mesh.config import KafkaSettings
from mesh.events import Envelope
from mesh.features._aggregates import AggregateStore
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
    done = rebuild(store, sources, batch_size=batch_size)
    log.info("rebuilt %s state: %d events read, %d applied in %.1fs (log %s, topics %s)", store.reducers.name,
             done.events, done.applied, done.seconds, event_log_dir, list(topics))
    return done
