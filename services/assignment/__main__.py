"""`python -m services.assignment`: wiring only (settings, telemetry, clients, model, consumer, gRPC)."""

from __future__ import annotations

import asyncio
import logging

from pydantic import Field

from mesh.bus import (
    ConsumerRunner,
    DeadLetterPolicy,
    KafkaConsumerTransport,
    KafkaPublisher,
    RedisDedupe,
    RunnerOptions,
    ensure_topics,
)
from mesh.config import MeshSettings
from mesh.events import TopicRegistry
from mesh.models import CHAMPION, ModelRegistry, ReloadingModel
from mesh.serving import ConsumerDied, run_service
from mesh.telemetry import serve_metrics, setup_tracing
from services.assignment.handlers import AssignmentHandler, JsonlLabelSink
from services.assignment.online import FeatureSync, feature_repo, open_online
from services.assignment.ranker import MODEL_NAME, SCHEMA, AssignmentRanker
from services.assignment.server import binding
from services.assignment.state import RedisState

TOPICS = ("tasks", "users", "projects")
TRAIN_COMMAND = "python -m services.assignment.train --source eventlog"
GROUP = "assignment"


class AssignmentSettings(MeshSettings):
    model_alias: str = Field(CHAMPION, description="registry alias the service serves and follows")


async def run(settings: AssignmentSettings) -> None:
    setup_tracing(settings.telemetry)
    serve_metrics(settings.telemetry.metrics_port)
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "predictions.assignment", "dlq"])
    # starts without a champion too: Unavailable (retried) until one is registered, then picked up
    model = ReloadingModel(ModelRegistry(settings.models), MODEL_NAME, settings.model_alias, settings.models,
                           schema=SCHEMA, train_hint=TRAIN_COMMAND)
    await model.start()
    state = RedisState(settings.redis.url, namespace=f"{settings.namespace}:assignment")
    project = None if settings.namespace == "mesh" else settings.namespace
    online = await asyncio.to_thread(open_online, feature_repo(settings, project))  # registers the views in Feast
    ranker = AssignmentRanker(state, online, model)
    publisher = KafkaPublisher(settings.kafka, registry)
    labels = JsonlLabelSink(settings.features.offline_dir / "assignment" / "labels.jsonl")
    handler = AssignmentHandler(FeatureSync(state, online), ranker, publisher, labels)
    runner = ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, GROUP), publisher=publisher,
                            topics=TOPICS, group_id=GROUP, handler=handler,
                            dedupe=RedisDedupe(settings.redis.url, namespace=settings.namespace),
                            dead_letter=DeadLetterPolicy.from_settings(settings.bus),
                            options=RunnerOptions.from_settings(settings.bus))
    try:
        await run_service("assignment", runner, [binding(ranker)], settings)
    finally:
        publisher.close()
        await model.aclose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = AssignmentSettings()  # type: ignore[call-arg]  # pydantic-settings reads the environment
    settings.telemetry.service_name = "assignment"
    try:
        asyncio.run(run(settings))
    except ConsumerDied as exc:  # logged where it died; exit non-zero so the orchestrator restarts us
        raise SystemExit(exc.exit_code) from exc


if __name__ == "__main__":
    main()
