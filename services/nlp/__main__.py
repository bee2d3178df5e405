"""`python -m services.nlp`: wiring only (settings, telemetry, vector database, embedder, consumer, gRPC)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from mesh.bus import ConsumerRunner, KafkaPublisher, ensure_topics
from mesh.config import MeshSettings, ServingSettings
from mesh.events import TopicRegistry
from mesh.models import CHAMPION, ModelRegistry, ReloadingModel
from mesh.serving import run_service, service_main
from mesh.telemetry import serve_metrics, setup_tracing
from services.nlp.effort_train import DEFAULT_MODEL as DEFAULT_EFFORT_MODEL
from services.nlp.effort_train import TRAIN_COMMAND as EFFORT_TRAIN_COMMAND
from services.nlp.effort_train import EffortEstimator
from services.nlp.embedder import DIM, MODEL_NAME, TRAIN_COMMAND, Embedder
from services.nlp.handlers import MeetingsOnly, NlpHandler
from services.nlp.search import HybridSearcher
from services.nlp.server import binding
from services.nlp.text import MODEL_NAME as SENTIMENT_MODEL
from services.nlp.text import SCHEMA as SENTIMENT_SCHEMA
from services.nlp.text import LLMPipeline, LLMSettings
from services.nlp.textwire import TextModels, TextServicer
from services.nlp.vectors import VectorIndex

log = logging.getLogger(__name__)
GROUP = "nlp"
SENTIMENT_TRAIN_COMMAND = "python -m services.nlp.text.sentiment_train"
TOPICS = ("tasks", "comments", "meetings", "tenants")


class NlpOptions(BaseModel):
    """Where the nlp service keeps its vectors."""

    vector_uri: str = Field("", description="Milvus URI: empty = an embedded Milvus Lite file under data_dir; "
                            "http://host:19530 = a Milvus server or cluster (the same client code)")
    sentiment: bool = Field(True, description="score comments with the nlp-sentiment champion (comments wait, "
                            "retried, until one is registered: `python -m services.nlp.text.sentiment_train`)")
    effort_model: Path = Field(DEFAULT_EFFORT_MODEL, description="the story-point model EstimateEffort serves "
                               f"(written by `{EFFORT_TRAIN_COMMAND}`; absent: EstimateEffort is Unavailable)")
    llm: LLMSettings = Field(default_factory=LLMSettings)  # type: ignore[arg-type]
    data_dir: Path | None = Field(None, description="where the Milvus Lite file lives, one file per namespace "
                                  "(default: nlp/ beside the offline store)")


class NlpSettings(MeshSettings):
    # Locally the gateway expects nlp on 50053 (assignment 50051, timeline 50052); MESH_SERVING__PORT overrides.
    serving: ServingSettings = Field(default_factory=lambda: ServingSettings.model_validate({"port": 50053}))
    nlp: NlpOptions = Field(default_factory=NlpOptions)  # type: ignore[arg-type]
    model_alias: str = Field(CHAMPION, description="registry alias of the embedder the service serves and follows")


def vector_uri(settings: NlpSettings) -> str:
    if settings.nlp.vector_uri:
        return settings.nlp.vector_uri
    data_dir = settings.nlp.data_dir or settings.features.offline_dir.parent / "nlp"
    data_dir.mkdir(parents=True, exist_ok=True)
    return str(data_dir / f"{settings.namespace}.milvus.db")


async def run(settings: NlpSettings) -> None:
    setup_tracing(settings.telemetry)
    serve_metrics(settings.telemetry.metrics_port)
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "predictions.nlp", "dlq"])
    # starts without a champion too: Unavailable (retried) until `python -m services.nlp.export` registers one
    models = ModelRegistry(settings.models)
    model = ReloadingModel(models, MODEL_NAME, settings.model_alias, settings.models, train_hint=TRAIN_COMMAND)
    await model.start()
    sentiment = ReloadingModel(models, SENTIMENT_MODEL, settings.model_alias, settings.models,
                               schema=SENTIMENT_SCHEMA, train_hint=SENTIMENT_TRAIN_COMMAND)
    await sentiment.start()
    index = await asyncio.to_thread(VectorIndex, vector_uri(settings), dim=DIM)
    embedder = Embedder(model)
    searcher = HybridSearcher(index, embedder)
    text = TextModels(sentiment, embedder, searcher)
    effort = await asyncio.to_thread(EffortEstimator.load, settings.nlp.effort_model)
    if effort is None:
        log.warning("no effort model at %s: EstimateEffort answers Unavailable until `%s` writes one",
                    settings.nlp.effort_model, EFFORT_TRAIN_COMMAND)
    redis = Redis.from_url(settings.redis.url)
    pipeline = LLMPipeline(settings.nlp.llm, redis, settings.namespace)
    publisher = KafkaPublisher(settings.kafka, registry)
    handler = NlpHandler(index, searcher, publisher, text if settings.nlp.sentiment else MeetingsOnly(text))
    runner = ConsumerRunner.for_service(settings, GROUP, TOPICS, publisher, batch_handler=handler)
    try:
        servicer = TextServicer(text, pipeline, searcher, effort)
        await run_service("nlp", runner, [binding(searcher, embedder, servicer)], settings)
    finally:
        publisher.close()
        await model.aclose()
        await sentiment.aclose()
        await redis.aclose()  # type: ignore[attr-defined]  # the stubs predate aclose
        index.close()


def main() -> None:
    service_main("nlp", NlpSettings, run)


if __name__ == "__main__":
    main()
