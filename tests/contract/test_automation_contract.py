"""Every example of every topic the automation service consumes goes through its real batch handler in the
shape its main runs it (ConsumerRunner with ``batch_handler``, in-process broker), with a next-action model
loaded so the suggestion pass runs over what the examples left in the facts: decoded, accepted, nothing
dead-lettered; and the topics its main subscribes to are the ones the registry says it consumes.

:func:`automation_handler` is the factory the shared examples contract
(``tests/contract/test_examples_contract.py``, ``CONSUMERS``) uses for the "automation" consumer. Its
approval store is the real Lua state machine on the local Redis (a namespace of its own, removed after)."""

from __future__ import annotations

import functools
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions
from mesh.config import MeshSettings, ModelSettings
from mesh.events import Envelope, TopicRegistry
from mesh.features import InMemoryAggregates
from mesh.models import OnnxModel, StaticModel, VersionedModel
from services.automation.__main__ import TOPICS
from services.automation.approval import ApprovalStore
from services.automation.engine import MODEL_NAME
from services.automation.handlers import AutomationHandler
from services.automation.model import VersionedScorer
from services.automation.state import AUTOMATION_REDUCERS, FactStore

REGISTRY = TopicRegistry()


@functools.cache
def _tiny_model() -> Path:
    """A next-action model (counted trigrams as ONNX, no torch) of a hand-made stream, once per session."""
    from services.automation.sequences import episodes_of
    from tests.unit.automation._events import planted_stream
    from tests.unit.automation._model import trigram_onnx

    path = Path(tempfile.mkdtemp(prefix="contract-automation-")) / "next.onnx"
    trigram_onnx(episodes_of(planted_stream().events), path)
    return path


@contextmanager
def automation_handler(tmp: Path, publisher: Publisher | None = None) -> Iterator[AutomationHandler]:
    """The automation batch handler: facts in memory, approvals on the local Redis, a tiny model, a
    suggestion pass on every batch."""
    client = redis.Redis.from_url(MeshSettings().redis.url)
    ns = f"contract_automation_{uuid.uuid4().hex[:10]}"
    facts = FactStore(InMemoryAggregates(AUTOMATION_REDUCERS))
    facts.store.mark_built()
    onnx = OnnxModel.load(_tiny_model(), ModelSettings.model_validate({}))
    model = StaticModel(VersionedModel(MODEL_NAME, "1", onnx))
    try:
        yield AutomationHandler(facts, ApprovalStore(client, ns),
                                publisher or Publisher(InMemoryBroker().producer(), REGISTRY),
                                VersionedScorer(model), mine_interval_s=0.0)
    finally:
        for key in client.scan_iter(f"{ns}:*"):
            client.delete(key)
        client.close()


def test_the_service_subscribes_to_exactly_the_topics_declared_for_it() -> None:
    assert sorted(TOPICS) == sorted(spec.logical for spec in REGISTRY.consumed_by("automation"))


@pytest.mark.integration
def test_every_example_of_the_automation_topics_is_handled(tmp_path: Path) -> None:
    broker = InMemoryBroker()
    publisher = Publisher(broker.producer(), REGISTRY)
    sent: list[Envelope] = [env for topic in TOPICS for env in REGISTRY.examples(topic)]
    assert {env.type for env in sent} >= {"task_created", "task_assigned", "task_status_changed", "task_commented",
                                          "user_activity", "user_joined", "project_created", "automation_created",
                                          "automation_run", "task_completed", "task_viewed"}
    for env in sent:
        publisher.publish(env)
    seen: list[str] = []
    with automation_handler(tmp_path, publisher) as handler:
        def handle_batch(envs: Sequence[Envelope]) -> None:
            handler(envs)
            seen.extend(env.type for env in envs)

        stats = ConsumerRunner(consumer=broker.consumer("automation"), publisher=publisher, topics=list(TOPICS),
                               group_id="automation", batch_handler=handle_batch,
                               options=RunnerOptions(max_messages=len(sent), poll_timeout_s=0.1,
                                                     idle_timeout_s=5)).run()
        assert stats.dead_lettered == 0, stats.dlq_reasons
        assert stats.handled == len(sent)
        assert sorted(seen) == sorted(env.type for env in sent)
        tenant = sent[0].tenant_id
        assert handler.last_pass(tenant) is not None  # the suggestion pass ran over the examples' facts
        facts = handler.facts.tenant(tenant)
        assert "auto-1" in facts.automations and "proj-1" in facts.projects
