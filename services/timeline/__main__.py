"""`python -m services.timeline`: wiring only (settings, telemetry, clients, model, consumer, gRPC)."""

from __future__ import annotations

import asyncio

from pydantic import Field

from mesh.bus import ConsumerRunner, KafkaPublisher, ensure_topics
from mesh.config import MeshSettings, ServingSettings
from mesh.events import TopicRegistry
from mesh.features import DEFAULT_PROJECT, FeatureRepoConfig
from mesh.mlops import DriftMonitor, DriftSettings, Runners, outcome_runner, registry_references
from mesh.models import CHAMPION, ModelRegistry, ReloadingModel
from mesh.serving import run_service, service_main
from mesh.telemetry import serve_metrics, setup_tracing
from services.timeline.alerts import AlertPolicy, RiskTracker
from services.timeline.effort_slot import EffortPrior
from services.timeline.handlers import TimelineHandler
from services.timeline.milestone import MILESTONE_FEATURES, MILESTONE_MODEL_NAME
from services.timeline.online import TOPICS, open_state, rebuilder
from services.timeline.outcomes import SPEC as OUTCOMES
from services.timeline.outcomes import TOPICS as OUTCOME_TOPICS
from services.timeline.predictor import MODEL_NAME, SCHEMA, TimelinePredictor
from services.timeline.server import binding

TRAIN_COMMAND = "python -m services.timeline.train --source eventlog"
GROUP = "timeline"
BATCH_SIZE = 500
"""Most events per batch: a batch's cost is mostly one forecast per project it touches, so taking more of a
backlog at once is how the service catches up (bench mesh: ~2x the events/s of batches of 200)."""


class TimelineSettings(MeshSettings):
    # Locally the gateway expects timeline on 50052 (assignment on 50051); MESH_SERVING__PORT overrides.
    serving: ServingSettings = Field(default_factory=lambda: ServingSettings.model_validate({"port": 50052}))
    model_alias: str = Field(CHAMPION, description="registry alias the service serves and follows")
    risk_threshold: float = Field(0.5, gt=0, le=1, description="P(miss deadline) that raises a deadline-risk alert")
    risk_hysteresis: float = Field(0.15, ge=0, lt=1, description="how far below the threshold P(miss) must "
                                   "fall before the same alert may fire again")
    simulations: int = Field(2000, gt=0, le=100_000, description="Monte-Carlo runs per project forecast")
    effort_prior: bool = Field(False, description="read the effort feature (story points from the task text) from "
                               "the nlp service's EstimateEffort (a model trained with the feature needs it; off by "
                               "default: it did not help on held-out weeks); nlp down = the feature is missing")
    nlp_target: str = Field("127.0.0.1:50053", description="host:port of the nlp service (effort estimates)")
    drift: DriftSettings = Field(default_factory=lambda: DriftSettings.model_validate({}))
    live_metrics: bool = Field(True, description="join task predictions to their completions (live MAE per "
                               "tenant and version, degradation alerts): consumer group timeline.outcomes")


async def run(settings: TimelineSettings) -> None:
    setup_tracing(settings.telemetry)
    serve_metrics(settings.telemetry.metrics_port)
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "predictions.timeline", "alerts", "dlq"])
    # both start without a champion too (Unavailable / Monte-Carlo milestones until one is registered)
    models = ModelRegistry(settings.models)
    model = ReloadingModel(models, MODEL_NAME, settings.model_alias, settings.models, schema=SCHEMA,
                           train_hint=TRAIN_COMMAND)
    await model.start()
    milestone = ReloadingModel(models, MILESTONE_MODEL_NAME, settings.model_alias, settings.models,
                               schema=MILESTONE_FEATURES, train_hint=TRAIN_COMMAND)
    await milestone.start()
    effort = _effort_prior(settings.nlp_target) if settings.effort_prior else None
    policy = AlertPolicy(settings.risk_threshold, settings.risk_hysteresis)
    state = open_state(settings, policy)
    project = DEFAULT_PROJECT if settings.namespace == "mesh" else settings.namespace
    rebuild = rebuilder(state, settings, FeatureRepoConfig.from_settings(settings, project).event_log_dir)
    if not await asyncio.to_thread(state.store.built):  # the state is a cache of the inputs: rebuilt when missing
        await asyncio.to_thread(rebuild)
    publisher = KafkaPublisher(settings.kafka, registry)
    # drift of the static inputs and the p50 per tenant vs the training reference of the serving version
    drift = DriftMonitor("timeline", registry_references(models), publisher.publish, settings.drift.policy()
                         ) if settings.drift.enabled else None
    predictor = TimelinePredictor(state, model, simulations=settings.simulations, effort=effort,
                                  milestone_model=milestone, drift=drift)
    handler = TimelineHandler(predictor, state, publisher, RiskTracker(state, policy), rebuild)
    runner = ConsumerRunner.for_service(settings, GROUP, TOPICS, publisher, batch_handler=handler,
                                        batch_size=BATCH_SIZE)
    # the outcome joiner: its own consumer group, in this process (mesh.mlops)
    runners = Runners(runner, outcome_runner(settings, OUTCOMES, OUTCOME_TOPICS, publisher)[0]
                      ) if settings.live_metrics else runner
    try:
        await run_service("timeline", runners, [binding(predictor)], settings)
    finally:
        publisher.close()
        await model.aclose()
        await milestone.aclose()


def _effort_prior(target: str) -> EffortPrior:
    # imported only when turned on: the estimates come from the nlp service over gRPC (no text model here)
    from services.timeline.effort_prior import NlpEffortPrior

    return NlpEffortPrior(target)


def main() -> None:
    service_main("timeline", TimelineSettings, run)


if __name__ == "__main__":
    main()
