"""`python -m services.assignment`: wiring only (settings, telemetry, clients, model, consumer, gRPC)."""

from __future__ import annotations

import asyncio

from pydantic import Field

from mesh.bus import ConsumerRunner, KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import TopicRegistry
from mesh.features import DEFAULT_PROJECT, FeatureRepoConfig
from mesh.mlops import (
    DriftMonitor,
    DriftSettings,
    Runners,
    outcome_runner,
    registry_references,
    with_shadow_topics,
)
from mesh.models import CHAMPION, ModelRegistry, ReloadingModel
from mesh.serving import run_service, service_main
from mesh.telemetry import serve_metrics, setup_tracing
from services.assignment.handlers import AssignmentHandler, JsonlLabelSink
from services.assignment.online import TOPICS, OnlineFeatures, open_state, rebuilder
from services.assignment.outcomes import SPEC as OUTCOMES
from services.assignment.outcomes import TOPICS as OUTCOME_TOPICS
from services.assignment.ranker import MODEL_NAME, SCHEMA, AssignmentRanker
from services.assignment.server import binding

TRAIN_COMMAND = "python -m services.assignment.train --source eventlog"
GROUP = "assignment"


class AssignmentSettings(MeshSettings):
    model_alias: str = Field(CHAMPION, description="registry alias the service serves and follows")
    drift: DriftSettings = Field(default_factory=lambda: DriftSettings.model_validate({}))
    shadow_alias: str = Field("", description="also serve this registry alias (e.g. challenger) in shadow on "
                              "the same tasks: predictions to ml.shadow.assignment only, scored beside the champion "
                              "by the outcome joiner (needs live_metrics); empty: no shadow")
    live_metrics: bool = Field(True, description="join predictions to their delayed outcomes (live MRR per "
                               "tenant and version, degradation alerts): consumer group assignment.outcomes")


async def run(settings: AssignmentSettings) -> None:
    setup_tracing(settings.telemetry)
    serve_metrics(settings.telemetry.metrics_port)
    shadow_topics = ["shadow.assignment"] if settings.shadow_alias else []
    registry = with_shadow_topics(settings.kafka.topic_prefix, ["assignment"]) if shadow_topics else \
        TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "predictions.assignment", "alerts", *shadow_topics, "dlq"])
    # starts without a champion too: Unavailable (retried) until one is registered, then picked up
    models = ModelRegistry(settings.models)
    model = ReloadingModel(models, MODEL_NAME, settings.model_alias, settings.models,
                           schema=SCHEMA, train_hint=TRAIN_COMMAND)
    await model.start()
    shadow_model = ReloadingModel(models, MODEL_NAME, settings.shadow_alias, settings.models, schema=SCHEMA,
                                  train_hint=TRAIN_COMMAND) if settings.shadow_alias else None
    if shadow_model is not None:
        await shadow_model.start()
    state = open_state(settings)
    project = DEFAULT_PROJECT if settings.namespace == "mesh" else settings.namespace
    rebuild = rebuilder(state, settings, FeatureRepoConfig.from_settings(settings, project).event_log_dir)
    await asyncio.to_thread(rebuild.ensure_built)  # the state is a cache of the inputs: rebuilt when missing
    publisher = KafkaPublisher(settings.kafka, registry)
    # drift of the inputs and scores per tenant vs the training reference of the version serving them
    drift = DriftMonitor("assignment", registry_references(models), publisher.publish, settings.drift.policy()
                         ) if settings.drift.enabled else None
    ranker = AssignmentRanker(state, OnlineFeatures(state), model, drift=drift)
    labels = JsonlLabelSink(settings.features.offline_dir / settings.namespace / "assignment" / "labels.jsonl")
    shadow = None if shadow_model is None else AssignmentRanker(state, OnlineFeatures(state), shadow_model)
    handler = AssignmentHandler(state, ranker, publisher, labels, rebuild, shadow=shadow)
    runner = ConsumerRunner.for_service(settings, GROUP, TOPICS, publisher, batch_handler=handler)
    # the outcome joiner: its own consumer group, in this process (mesh.mlops)
    runners = Runners(runner, outcome_runner(settings, OUTCOMES, [*OUTCOME_TOPICS, *shadow_topics], publisher)[0]
                      ) if settings.live_metrics else runner
    try:
        await run_service("assignment", runners, [binding(ranker)], settings)
    finally:
        publisher.close()
        await model.aclose()
        if shadow_model is not None:
            await shadow_model.aclose()


def main() -> None:
    service_main("assignment", AssignmentSettings, run)


if __name__ == "__main__":
    main()
