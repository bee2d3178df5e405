"""Every example of every topic the nlp service consumes goes through its real batch handler in the shape
its main runs it (ConsumerRunner with ``batch_handler``, in-process broker): decoded, accepted, nothing
dead-lettered; and the topics its main subscribes to are the ones the registry says it consumes.

:func:`nlp_handler` is the factory the shared examples contract (``tests/contract/test_examples_contract.py``,
``CONSUMERS``) can use for the "nlp" consumer."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions
from mesh.events import Envelope, TopicRegistry, decode
from services.nlp.__main__ import TOPICS
from services.nlp.handlers import NlpHandler

REGISTRY = TopicRegistry()


@contextmanager
def nlp_handler(tmp: Path) -> Iterator[NlpHandler]:
    """The nlp batch handler on a Milvus collection of its own and an in-memory publisher."""
    from tests.unit.nlp.helpers import service

    svc = service()
    try:
        yield svc.handler(Publisher(InMemoryBroker().producer(), REGISTRY))
    finally:
        svc.index.drop()


def test_the_service_subscribes_to_exactly_the_topics_declared_for_it() -> None:
    assert sorted(TOPICS) == sorted(spec.logical for spec in REGISTRY.consumed_by("nlp"))


def test_every_example_of_the_nlp_topics_is_handled(tmp_path: Path) -> None:
    broker = InMemoryBroker()
    publisher = Publisher(broker.producer(), REGISTRY)
    sent: list[Envelope] = [env for topic in TOPICS for env in REGISTRY.examples(topic)]
    assert {env.type for env in sent} >= {"task_created", "task_updated", "task_commented", "meeting_transcript",
                                          "tenant_erased"}
    for env in sent:
        publisher.publish(env)
    seen: list[str] = []
    with nlp_handler(tmp_path) as handler:
        def handle_batch(envs: Sequence[Envelope]) -> None:
            handler(envs)
            seen.extend(env.type for env in envs)

        stats = ConsumerRunner(consumer=broker.consumer("nlp"), publisher=publisher, topics=list(TOPICS),
                               group_id="nlp", batch_handler=handle_batch,
                               options=RunnerOptions(max_messages=len(sent), poll_timeout_s=0.1,
                                                     idle_timeout_s=5)).run()
    assert stats.dead_lettered == 0, stats.dlq_reasons
    assert stats.handled == len(sent)
    assert sorted(seen) == sorted(env.type for env in sent)
    outputs = [decode(m.value) for m in broker.messages(REGISTRY.physical("predictions.nlp"))]
    assert all(o.type == "nlp_prediction" for o in outputs)
