"""`python -m services.anomaly`: wiring only (settings, telemetry, model, state, consumer, gRPC).

Consumes ``sunday.activity`` (group ``anomaly``), keeps per-user windows, rules memory and incidents in Redis
(`state`), scores closed hours with the registry's champion (``anomaly``, followed by alias; until one
exists the consumer holds its batches and ScoreEntity answers UNAVAILABLE), publishes alerts to
``ml.alerts``, serves `anomaly.proto` on port 50054 (``MESH_SERVING__PORT`` overrides).
"""

from __future__ import annotations

import redis
from pydantic import Field

from mesh.bus import ConsumerRunner, KafkaPublisher, ensure_topics
from mesh.config import MeshSettings, ServingSettings
from mesh.events import TopicRegistry
from mesh.features import RedisAggregates
from mesh.models import CHAMPION, ModelRegistry, ReloadingModel
from mesh.serving import run_service, service_main
from mesh.telemetry import serve_metrics, setup_tracing
from services.anomaly.ensemble import Scorer
from services.anomaly.handlers import AnomalyHandler
from services.anomaly.model import MODEL_NAME, SCHEMA, ServedCache
from services.anomaly.rules_store import RulesStore
from services.anomaly.server import DEFAULT_PORT, binding
from services.anomaly.state import DetectorContext, StoreIncidents, anomaly_reducers

TRAIN_COMMAND = "python -m services.anomaly.train --source eventlog"
GROUP = "anomaly"
TOPICS = ("activity",)
"""The input topics of the service (logical names)."""


class AnomalySettings(MeshSettings):
    model_alias: str = Field(CHAMPION, description="registry alias the service serves and follows")
    # Locally the gateway expects anomaly on 50054; MESH_SERVING__PORT overrides (the deployments use 50051).
    serving: ServingSettings = Field(default_factory=lambda: ServingSettings.model_validate({"port": DEFAULT_PORT}))


def state_namespace(settings: MeshSettings) -> str:
    """Where the service's state and rules live in Redis (per deployment namespace)."""
    return f"{settings.namespace}:anomaly"


async def run(settings: AnomalySettings) -> None:
    setup_tracing(settings.telemetry)
    serve_metrics(settings.telemetry.metrics_port)
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "alerts", "dlq"])
    # starts without a champion too: Unavailable (the bus holds, gRPC answers it) until one is registered
    model = ReloadingModel(ModelRegistry(settings.models), MODEL_NAME, settings.model_alias, settings.models,
                           schema=SCHEMA, train_hint=TRAIN_COMMAND)
    await model.start()
    served = ServedCache()

    def champion() -> Scorer:
        return served(model.current)

    client = redis.Redis.from_url(settings.redis.url, socket_connect_timeout=5, socket_timeout=5)
    rules = RulesStore(client, state_namespace(settings))
    dctx = DetectorContext(champion, lambda tenant: rules.get(tenant).rules)
    store = RedisAggregates(client, state_namespace(settings), reducers=anomaly_reducers(dctx))
    publisher = KafkaPublisher(settings.kafka, registry)
    handler = AnomalyHandler(store, dctx, publisher, rules)
    runner = ConsumerRunner.for_service(settings, GROUP, TOPICS, publisher, batch_handler=handler)
    incidents = StoreIncidents(store, lambda tenant: rules.get(tenant).rules)
    try:
        await run_service("anomaly", runner, [binding(champion, incidents, rules)], settings)
    finally:
        publisher.close()
        await model.aclose()


def main() -> None:
    service_main("anomaly", AnomalySettings, run)


if __name__ == "__main__":
    main()
