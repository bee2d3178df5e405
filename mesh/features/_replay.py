"""Rebuild and backfill: replay the event log, any iterable of envelopes, or a Kafka topic from an offset.

Replays go through the same ingestor as the live stream, in the same order, so a fresh store ends up
with the same online features; the aggregates dedupe by event id, so replaying twice changes nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.config import KafkaSettings
from mesh.events import Envelope, InvalidEvent, decode
from mesh.features._eventlog import Coords, EventLog, LoggedEvent
from mesh.features._ingest import FeatureIngestor

Progress = Callable[["ReplayStats"], None]


@dataclass(frozen=True)
class ReplayStats:
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    rows_pushed: int = 0
    invalid: int = 0
    seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def replay(ingestor: FeatureIngestor, events: Iterable[Envelope | LoggedEvent], *, batch_size: int = 500,
           log: bool = False, progress: Progress | None = None) -> ReplayStats:
    """Feed events to the ingestor in order, in batches. `log=True` also writes them to the event log."""
    start, stats, batch = time.perf_counter(), ReplayStats(), []
    for item in events:
        batch.append(item if isinstance(item, LoggedEvent) else LoggedEvent(item))
        if len(batch) >= batch_size:
            stats = _feed(ingestor, batch, log, stats, start, progress)
            batch = []
    return _feed(ingestor, batch, log, stats, start, progress)


def _feed(ingestor: FeatureIngestor, batch: list[LoggedEvent], log: bool, s: ReplayStats, start: float,
          progress: Progress | None) -> ReplayStats:
    got = ingestor.handle_batch(batch, log=log)
    s = ReplayStats(s.events + got.events, s.applied + got.applied, s.duplicates + got.duplicates,
                    s.rows_pushed + got.rows_pushed, s.invalid, time.perf_counter() - start)
    if progress is not None and batch:
        progress(s)
    return s


def replay_log(ingestor: FeatureIngestor, log_dir: Path, *, batch_size: int = 500,
               progress: Progress | None = None) -> ReplayStats:
    """Rebuild from an event log directory; events are copied into the target's own log unless it is that log."""
    own = ingestor.event_log is not None and ingestor.event_log.root.resolve() == log_dir.resolve()
    return replay(ingestor, EventLog(log_dir).read(), batch_size=batch_size, log=not own, progress=progress)


@dataclass
class TopicReader:
    """Reads a topic from an offset up to its end at the time of the call (a backfill, not a subscription)."""

    kafka: KafkaSettings
    topic: str
    offset: int = 0
    """Start offset in every partition; below the earliest retained offset starts at the earliest."""
    timeout_s: float = 60.0
    invalid: int = 0

    def __iter__(self) -> Iterator[LoggedEvent]:
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.kafka.bootstrap_servers, "enable.auto.commit": False,
                             "group.id": f"features-backfill-{uuid.uuid4().hex}", "client.id": self.kafka.client_id})
        try:
            meta = consumer.list_topics(self.topic, timeout=self.kafka.connect_timeout_s).topics[self.topic]
            if meta.error is not None:
                raise RuntimeError(f"topic {self.topic!r}: {meta.error}")
            ends: dict[int, int] = {}
            assign = []
            for p in sorted(meta.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p),
                                                           timeout=self.kafka.connect_timeout_s)
                start = max(self.offset, low)
                if start < high:
                    ends[p] = high
                    assign.append(TopicPartition(self.topic, p, start))
            consumer.assign(assign)
            yield from self._drain(consumer, ends)
        finally:
            consumer.close()

    def _drain(self, consumer: Any, ends: dict[int, int]) -> Iterator[LoggedEvent]:
        remaining, deadline = dict(ends), time.monotonic() + self.timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"backfill of {self.topic!r} stalled; partitions left: {sorted(remaining)}")
            for msg in consumer.consume(500, 1.0):
                if msg.error() is not None:
                    continue
                p, off = msg.partition(), msg.offset()
                if off >= ends.get(p, 0):
                    continue  # written after the backfill started: the live consumer has it
                if off >= ends[p] - 1:
                    remaining.pop(p, None)
                try:
                    yield LoggedEvent(decode(msg.value()), Coords(self.topic, p, off))
                except InvalidEvent:
                    self.invalid += 1  # the live runner dead-letters these; a backfill only counts them


def replay_topic(ingestor: FeatureIngestor, kafka: KafkaSettings, topic: str, offset: int = 0, *,
                 batch_size: int = 500, progress: Progress | None = None) -> ReplayStats:
    """Backfill from a Kafka topic; the events are logged (the log may be missing them)."""
    reader = TopicReader(kafka, topic, offset)
    stats = replay(ingestor, reader, batch_size=batch_size, log=True, progress=progress)
    return ReplayStats(stats.events, stats.applied, stats.duplicates, stats.rows_pushed, reader.invalid,
                       stats.seconds)
