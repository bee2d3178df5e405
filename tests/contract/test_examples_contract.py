"""Every example payload of every topic goes through every declared consumer of that topic, through the
real bus runner path (in-process broker): decoded, accepted, nothing dead-lettered."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from mesh.bus import ConsumerRunner, Handler, InMemoryBroker, Publisher, RunnerOptions
from mesh.events import Envelope, TopicRegistry, decode, encode

REGISTRY = TopicRegistry()
ConsumerFactory = Callable[[Path], "contextmanager[Handler]"]


@contextmanager
def _features(tmp: Path) -> Iterator[Handler]:
    from mesh.features import (
        EventLog,
        FeatureIngestor,
        FeatureRepo,
        FeatureRepoConfig,
        InMemoryAggregates,
        InMemoryFeatureClient,
    )

    repo = FeatureRepo(FeatureRepoConfig("contract", tmp / "repo", tmp / "offline", "sqlite"))
    yield FeatureIngestor(repo, InMemoryAggregates(), InMemoryFeatureClient(),
                          EventLog(tmp / "events")).handle_envelopes


@contextmanager
def _webhooks(tmp: Path) -> Iterator[Handler]:
    import redis.asyncio as aioredis

    from gateway.webhooks.consumer import DeliveryEnqueuer
    from gateway.webhooks.store import WebhookStore
    from mesh.config import MeshSettings

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    client = aioredis.Redis.from_url(MeshSettings().redis.url)
    try:
        yield DeliveryEnqueuer(WebhookStore(client, f"contract-{uuid.uuid4().hex[:8]}"), loop)
    finally:
        asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@contextmanager
def _timeline(tmp: Path) -> Iterator[Handler]:
    from mesh.config import ModelSettings
    from mesh.models import OnnxModel, StaticModel, VersionedModel
    from services.timeline.export import export_untrained
    from services.timeline.handlers import in_memory_handler
    from services.timeline.predictor import MODEL_NAME

    model = StaticModel(VersionedModel(MODEL_NAME, "0", OnnxModel.load(export_untrained(tmp), ModelSettings())))
    publisher = Publisher(InMemoryBroker().producer(), REGISTRY)
    yield in_memory_handler(model, publisher, simulations=100)


@functools.cache
def _assignment_model() -> Path:
    """A tiny trained assignment ranker, built once per session (a second or two)."""
    from tests.unit.assignment.helpers import tiny_model

    return tiny_model(Path(tempfile.mkdtemp(prefix="contract-assignment-")))


@contextmanager
def _assignment(tmp: Path) -> Iterator[Handler]:
    from tests.unit.assignment.helpers import build_service, static_model

    service = build_service(static_model(_assignment_model()))  # in-memory state and Feast client
    yield service.handler(Publisher(InMemoryBroker().producer(), REGISTRY))


@contextmanager
def _nlp(tmp: Path) -> Iterator[object]:
    from tests.contract.test_nlp_contract import nlp_handler

    with nlp_handler(tmp) as handler:
        yield handler


@contextmanager
def _automation(tmp: Path) -> Iterator[object]:
    from tests.contract.test_automation_contract import automation_handler

    with automation_handler(tmp) as handler:
        yield handler


@contextmanager
def _personalization(tmp: Path) -> Iterator[object]:
    from mesh.features import InMemoryAggregates
    from services.personalization.handlers import PersonalizationHandler
    from services.personalization.state import PERSONALIZATION_REDUCERS

    store = InMemoryAggregates(PERSONALIZATION_REDUCERS)
    store.mark_built()
    yield PersonalizationHandler(store)


@contextmanager
def _anomaly(tmp: Path) -> Iterator[object]:
    from tests.contract.test_anomaly_contract import contract_handler

    with contract_handler(tmp) as handler:
        yield handler


# consumer name (as declared in mesh/events/_topics.py) -> how to build its real handler
CONSUMERS: dict[str, Callable[[Path], object]] = {
    "anomaly": _anomaly,
    "assignment": _assignment,
    "automation": _automation,
    "features": _features,
    "gateway.webhooks": _webhooks,
    "nlp": _nlp,
    "personalization": _personalization,
    "timeline": _timeline,
}
NEEDS_REDIS = {"gateway.webhooks", "automation"}


BATCH_CONSUMERS = {"anomaly", "assignment", "timeline", "features", "nlp", "personalization", "automation"}
"""Consumers whose main runs them with ``batch_handler`` (the others take one event at a time)."""


def test_every_declared_consumer_has_a_contract_handler() -> None:
    declared = {c for spec in REGISTRY for c in spec.consumers}
    assert declared <= set(CONSUMERS), f"consumers without a contract handler: {declared - set(CONSUMERS)}"


def test_every_example_round_trips_through_the_codec() -> None:
    for spec in REGISTRY:
        for env in REGISTRY.examples(spec.logical):
            assert decode(encode(env)) == env
            assert REGISTRY.for_event(env.type) == spec


@pytest.mark.parametrize("consumer", [
    pytest.param(c, marks=pytest.mark.integration) if c in NEEDS_REDIS else c for c in sorted(CONSUMERS)])
def test_every_example_is_accepted_by_every_consumer_of_its_topic(consumer: str, tmp_path: Path) -> None:
    specs = REGISTRY.consumed_by(consumer)
    assert specs, f"{consumer} consumes no topic"
    broker = InMemoryBroker()
    publisher = Publisher(broker.producer(), REGISTRY)
    sent: list[Envelope] = [env for spec in specs for env in REGISTRY.examples(spec.logical)]
    for env in sent:
        publisher.publish(env)
    with CONSUMERS[consumer](tmp_path) as handler:  # type: ignore[attr-defined]
        seen: list[str] = []

        def handle(env: Envelope) -> None:
            handler(env)
            seen.append(env.type)

        def handle_batch(envs: Sequence[Envelope]) -> None:
            handler(envs)
            seen.extend(env.type for env in envs)

        # each consumer runs in the shape its main gives it: batch handlers get batches, as in production
        shape = {"batch_handler": handle_batch} if consumer in BATCH_CONSUMERS else {"handler": handle}
        stats = ConsumerRunner(consumer=broker.consumer(consumer), publisher=publisher,
                               topics=[s.logical for s in specs], group_id=consumer, **shape,  # type: ignore[arg-type]
                               options=RunnerOptions(max_messages=len(sent), poll_timeout_s=0.1,
                                                     idle_timeout_s=5)).run()
    assert stats.dead_lettered == 0, stats.dlq_reasons
    assert stats.handled == len(sent)
    assert sorted(seen) == sorted(env.type for env in sent)
