"""`python -m services.automation`: wiring only (settings, telemetry, state, model, consumer, gRPC)."""

from __future__ import annotations

import asyncio

import redis
from pydantic import BaseModel, Field

from mesh.bus import ConsumerRunner, KafkaPublisher, ensure_topics
from mesh.config import MeshSettings, ServingSettings
from mesh.events import TopicRegistry
from mesh.features import DEFAULT_PROJECT, FeatureRepoConfig, Rebuilder, RedisAggregates
from mesh.models import CHAMPION, ModelRegistry, ReloadingModel
from mesh.serving import run_service, service_main
from mesh.telemetry import serve_metrics, setup_tracing
from services.automation.approval import ApprovalStore
from services.automation.engine import MODEL_NAME, EngineConfig
from services.automation.handlers import AutomationHandler
from services.automation.model import SCHEMA, VersionedScorer
from services.automation.server import binding
from services.automation.state import AUTOMATION_REDUCERS, FactStore
from services.automation.templates import NlpEmbedder
from services.automation.validate import Validator, ValidatorConfig

GROUP = "automation"
TOPICS = ("tasks", "comments", "activity", "automations", "users", "projects")
"""The input topics (logical names)."""
OUTPUTS = ("suggestions", "predictions.automation", "dlq")
TRAIN_COMMAND = "python -m services.automation.train"


class AutomationOptions(BaseModel):
    mine_interval_s: float = Field(60.0, ge=0, description="a tenant is mined at most this often (per replica)")
    cooldown_days: float = Field(14.0, gt=0, description="a rejected pattern is not re-suggested to that person "
                                                        "for this long")
    expire_days: float = Field(14.0, gt=0, description="an undecided suggestion expires after this long")
    max_items_per_day: int = Field(100, ge=1, description="blast-radius cap of a suggested automation")
    dry_run_weeks: float = Field(4.0, gt=0, description="how far back the dry run replays the tenant's triggers")
    nlp_address: str = Field("127.0.0.1:50053", description="the nlp service (Embed) for template matching; "
                                                           "unreachable = structural matching only")


class AutomationSettings(MeshSettings):
    serving: ServingSettings = Field(default_factory=lambda: ServingSettings.model_validate({"port": 50056}))
    automation: AutomationOptions = Field(default_factory=AutomationOptions)  # type: ignore[arg-type]
    model_alias: str = Field(CHAMPION, description="registry alias of the next-action model served and followed")


async def run(settings: AutomationSettings) -> None:
    setup_tracing(settings.telemetry)
    serve_metrics(settings.telemetry.metrics_port)
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, *OUTPUTS])
    model = ReloadingModel(ModelRegistry(settings.models), MODEL_NAME, settings.model_alias, settings.models,
                           schema=SCHEMA, train_hint=TRAIN_COMMAND)
    await model.start()
    client = redis.Redis.from_url(settings.redis.url, socket_connect_timeout=5, socket_timeout=5)
    ns = f"{settings.namespace}:automation"
    facts = FactStore(RedisAggregates(client, ns, reducers=AUTOMATION_REDUCERS))
    project = DEFAULT_PROJECT if settings.namespace == "mesh" else settings.namespace
    log_dir = FeatureRepoConfig.from_settings(settings, project).event_log_dir
    rebuild = Rebuilder.of(facts.store, settings, TOPICS, log_dir)
    await asyncio.to_thread(rebuild.ensure_built)  # the facts are a cache of the inputs: rebuilt when missing
    opts = settings.automation
    approvals = ApprovalStore(client, ns, cooldown_s=int(opts.cooldown_days * 86400),
                              expire_after_s=opts.expire_days * 86400)
    validator_config = ValidatorConfig(opts.dry_run_weeks, opts.max_items_per_day)
    publisher = KafkaPublisher(settings.kafka, registry)
    handler = AutomationHandler(facts, approvals, publisher, VersionedScorer(model),
                                embedder=NlpEmbedder(opts.nlp_address),
                                config=EngineConfig(validator=validator_config),
                                mine_interval_s=opts.mine_interval_s, rebuild=rebuild)
    runner = ConsumerRunner.for_service(settings, GROUP, TOPICS, publisher, batch_handler=handler)
    try:
        await run_service("automation", runner, [binding(handler, Validator(facts, validator_config))], settings)
    finally:
        publisher.close()
        await model.aclose()
        client.close()


def main() -> None:
    service_main("automation", AutomationSettings, run)


if __name__ == "__main__":
    main()
