"""`python -m services.personalization`: wiring only (settings, telemetry, state, consumer, gRPC)."""

from __future__ import annotations

import asyncio

from pydantic import Field

from mesh.bus import ConsumerRunner, KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.config._settings import ServingSettings
from mesh.events import TopicRegistry
from mesh.features import DEFAULT_PROJECT, FeatureRepoConfig
from mesh.models import CHAMPION, ModelRegistry
from mesh.serving import run_service, service_main
from mesh.telemetry import serve_metrics, setup_tracing
from services.personalization.embeddings import NlpEmbedder
from services.personalization.factors import MODEL_NAME
from services.personalization.handlers import PersonalizationHandler
from services.personalization.linucb import LinUCBConfig
from services.personalization.online import TOPICS, follow_registry, load_registered, open_store, rebuilder
from services.personalization.recommend import Recommender
from services.personalization.server import binding

GROUP = "personalization"
PORT = 50055


class PersonalizationSettings(MeshSettings):
    serving: ServingSettings = Field(default_factory=lambda: ServingSettings(port=PORT))  # type: ignore[call-arg]
    model_name: str = Field(MODEL_NAME, description="registered policy model (ALS factors, segments as .npz)")
    model_alias: str = Field(CHAMPION, description="the registry alias served (followed every "
                                                   "models.reload_interval_s)")
    alpha: float = Field(0.3, gt=0, description="LinUCB confidence width")
    epsilon: float = Field(0.05, gt=0, le=1, description="share of random slates (propensity floor epsilon/n)")
    max_candidates: int = Field(200, ge=1, description="newest visible tasks scored per request")
    min_arm_updates: int = Field(0, ge=0, description="a segment with fewer updates scores by the pooled arm "
                                                      "(0: always its own)")
    nlp_target: str = Field("", description="host:port of the nlp service's gRPC (Embed) for the text-similarity "
                                            "column; empty = off (the column is 0, as when nlp is unreachable)")


async def run(settings: PersonalizationSettings) -> None:
    setup_tracing(settings.telemetry)
    serve_metrics(settings.telemetry.metrics_port)
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "dlq"])
    store = open_store(settings)
    project = DEFAULT_PROJECT if settings.namespace == "mesh" else settings.namespace
    rebuild = rebuilder(store, settings, FeatureRepoConfig.from_settings(settings, project).event_log_dir)
    await asyncio.to_thread(rebuild.ensure_built)  # the state is a cache of the inputs: rebuilt when missing
    embedder = NlpEmbedder(settings.nlp_target) if settings.nlp_target else None
    models = await asyncio.to_thread(ModelRegistry, settings.models)
    loaded, model = await asyncio.to_thread(load_registered, models, settings.model_name, settings.model_alias)
    recommender = Recommender(store, model, max_candidates=settings.max_candidates,
                              config=LinUCBConfig(alpha=settings.alpha, epsilon=settings.epsilon,
                                                  min_arm_updates=settings.min_arm_updates), embedder=embedder)
    publisher = KafkaPublisher(settings.kafka, registry)
    follower = asyncio.create_task(follow_registry(models, settings.model_name, settings.model_alias, recommender,
                                                   settings.models.reload_interval_s, loaded))
    handler = PersonalizationHandler(store, rebuild)
    runner = ConsumerRunner.for_service(settings, GROUP, TOPICS, publisher, batch_handler=handler)
    try:
        await run_service("personalization", runner, [binding(recommender, publisher)], settings)
    finally:
        follower.cancel()
        publisher.close()


def main() -> None:
    service_main("personalization", PersonalizationSettings, run)


if __name__ == "__main__":
    main()
