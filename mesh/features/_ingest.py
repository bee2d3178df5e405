"""`FeatureIngestor`: the "features" consumer of every input topic.

For each batch: log the events (durably, first: the log is the source of truth for rebuilds), apply
them to the aggregates (atomic, deduped by event id), then push the changed entities' full rows to the
online store, stamped with the newest event time in each. Redelivery after a crash between the steps
logs the event again (readers dedupe) and re-pushes nothing new, because the aggregate saw it already.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mesh.events import Envelope, TopicRegistry
from mesh.features._aggregates import AggregateStore, InMemoryAggregates, RedisAggregates
from mesh.features._client import FeastFeatureClient, FeatureClient
from mesh.features._eventlog import EventLog, LoggedEvent
from mesh.features._repo import FeatureRepo
from mesh.features._schema import FeatureRecord, record_of

CONSUMER = "features"

STATE_CACHE = 200_000
"""Entity states the ingestor keeps decoded between batches (see :class:`RedisAggregates`): a few KB each."""


@dataclass(frozen=True)
class IngestStats:
    events: int
    applied: int
    duplicates: int
    rows_pushed: int


class FeatureIngestor:
    """Events in, fresh online features and an offline event log out."""

    def __init__(self, repo: FeatureRepo, aggregates: AggregateStore, client: FeatureClient,
                 event_log: EventLog | None) -> None:
        self.repo = repo
        self.aggregates = aggregates
        self.client = client
        self.event_log = event_log

    def handle(self, env: Envelope) -> None:
        """The bus handler: one event (already decoded and validated)."""
        self.handle_batch([LoggedEvent(env)])

    def handle_envelopes(self, envs: Sequence[Envelope]) -> None:
        """The bus batch handler (the live consumer, :func:`mesh.features.ingestor_runner`)."""
        self.handle_batch([LoggedEvent(env) for env in envs])

    def handle_batch(self, events: Sequence[LoggedEvent], *, log: bool = True) -> IngestStats:
        """Many events at once: one log file, one aggregate transaction, one push per view."""
        if not events:
            return IngestStats(0, 0, 0, 0)
        if log and self.event_log is not None:
            self.event_log.append(events)
        applied = self.aggregates.apply([e.envelope for e in events])
        pushed = self._push(applied.changed)
        return IngestStats(len(events), applied.applied, applied.duplicates, pushed)

    def _push(self, states: Sequence[Any]) -> int:
        by_view: dict[str, list[FeatureRecord[Any]]] = defaultdict(list)
        for state in states:
            for view in self.repo.views.values():
                if isinstance(state, view.state_type):
                    by_view[view.name].append(record_of(view, state))
        self.client.push_many([(self.repo.view(name), records) for name, records in by_view.items()])
        return sum(len(r) for r in by_view.values())

    @staticmethod
    def topics(registry: TopicRegistry) -> list[str]:
        """Physical names of every topic this consumer reads."""
        return [registry.physical(spec.logical) for spec in registry.consumed_by(CONSUMER)]


def open_aggregates(repo: FeatureRepo) -> AggregateStore:
    """Redis aggregates with the Redis online store; in memory (warmed from the event log) with SQLite."""
    if repo.config.online_store == "redis":
        import redis

        return RedisAggregates(redis.Redis.from_url(repo.config.redis_url), repo.config.namespace,
                               cache_states=STATE_CACHE)
    aggregates = InMemoryAggregates()
    log = EventLog(repo.config.event_log_dir)
    batch: list[Envelope] = []
    for logged in log.read():
        batch.append(logged.envelope)
        if len(batch) >= 1000:
            aggregates.apply(batch)
            batch = []
    aggregates.apply(batch)
    return aggregates


def build_ingestor(repo: FeatureRepo, *, client: FeatureClient | None = None) -> FeatureIngestor:
    """The ingestor with the adapters the repo's config names (the one place they are chosen)."""
    return FeatureIngestor(repo, open_aggregates(repo), client or FeastFeatureClient(repo),
                           EventLog(repo.config.event_log_dir))
