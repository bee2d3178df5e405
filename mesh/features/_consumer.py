"""The live feature ingestion: the "features" consumer group running the ingestor over every input topic.

Wiring only: the mesh's :class:`~mesh.bus.ConsumerRunner` (decode, validate, classify failures, commit last)
with :meth:`FeatureIngestor.handle_envelopes` as its batch handler. The aggregates dedupe by event id in
the same transaction as the state, so the runner needs no dedupe store of its own.
"""

from __future__ import annotations

from mesh.bus import (
    BatchHandler,
    ConsumerRunner,
    DeadLetterPolicy,
    KafkaConsumerTransport,
    KafkaPublisher,
    RunnerOptions,
)
from mesh.config import MeshSettings
from mesh.events import TopicRegistry
from mesh.features._ingest import CONSUMER, FeatureIngestor

CONSUMER_BATCH_SIZE = 10_000
"""Events per apply/push/commit when a backlog is waiting: the ingestor's cost is per changed entity and per
batch (one Redis transaction, one pipelined online write, one log file per event date), and an entity changed
by several events of a batch is written once, so bigger batches are cheaper per event (measured on a simulated
month: online rows ~3x cheaper per event at 10,000 than at 2,000); a quiet topic still gets small batches after
the runner's linger."""


def input_topics(registry: TopicRegistry) -> list[str]:
    """Logical names of every topic the features consumer reads."""
    return [spec.logical for spec in registry.consumed_by(CONSUMER)]


def ingestor_runner(settings: MeshSettings, ingestor: FeatureIngestor, *, group_id: str = CONSUMER,
                    options: RunnerOptions | None = None, handler: BatchHandler | None = None) -> ConsumerRunner:
    """The features consumer: `ingestor` fed by the input topics under `settings.kafka.topic_prefix`.
    `handler` replaces `ingestor.handle_envelopes` (a wrapper around it: benchmarks, tests)."""
    registry = TopicRegistry(settings.kafka.topic_prefix)
    return ConsumerRunner(
        consumer=KafkaConsumerTransport(settings.kafka, group_id),
        publisher=KafkaPublisher(settings.kafka, registry),
        topics=input_topics(registry), group_id=group_id, batch_handler=handler or ingestor.handle_envelopes,
        dead_letter=DeadLetterPolicy.from_settings(settings.bus),
        options=options or RunnerOptions(batch_size=CONSUMER_BATCH_SIZE, linger_s=settings.bus.linger_s))
