"""The nlp service's consumer on the real broker and Redis (the runner its main builds:
``ConsumerRunner.for_service``, Redis dedupe, DLQ) with its real batch handler on Milvus Lite: task events
in -> vectors searchable; a near-duplicate task -> a duplicates prediction on ml.predictions.nlp; a
malformed event and an event with an unusable id -> ml.dlq, the consumer goes on; tenant erasure removes
every vector of the tenant and nothing of the others."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import ConsumerRunner, KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, decode, new_envelope
from services.nlp.__main__ import GROUP, TOPICS
from tests.support import drain, wait_until
from tests.unit.nlp.helpers import Service, service

pytestmark = pytest.mark.integration
A, B = "tenant-a", "tenant-b"


@pytest.fixture
def running(settings: MeshSettings) -> Iterator[tuple[KafkaPublisher, TopicRegistry, Service]]:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "predictions.nlp", "dlq"])
    publisher = KafkaPublisher(settings.kafka, registry)
    svc = service()
    runner = ConsumerRunner.for_service(settings, GROUP, TOPICS, publisher, batch_handler=svc.handler(publisher))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    yield publisher, registry, svc
    runner.stop()
    thread.join(30)
    publisher.close()
    svc.index.drop()


def created(tenant: str, task: str, title: str, description: str) -> Envelope:
    return new_envelope(tenant, e.TaskCreated(task_id=task, project_id="proj-1", title=title,
                                              description=description), producer="test")


def test_events_in_vectors_and_duplicates_out_erasure_and_dlq(
        running: tuple[KafkaPublisher, TopicRegistry, Service], settings: MeshSettings) -> None:
    publisher, registry, svc = running
    first = created(A, "t-1", "NameNode crashes on restart after the disk filled up",
                    "The namenode cannot replay its edit log when the disk is full.")
    for env in (first, created(A, "t-2", "Add dark mode to the settings page", "Users want a dark theme."),
                created(B, "t-9", "NameNode crashes on restart after the disk filled up", "Tenant B's copy.")):
        publisher.publish(env)
    publisher.publish_raw("tasks", b"\x08garbage", b"tenant-a:x", [])
    bad_id = new_envelope(A, e.TaskCreated(task_id='t" or tenant_id != "', project_id="p", title="x"),
                          producer="test")
    publisher.publish(bad_id)
    publisher.flush()
    wait_until(lambda: svc.index.count(A) == 2 and svc.index.count(B) == 1, "the tasks to be indexed", 60)
    hits, _ = svc.searcher.search(A, "namenode restart", 5)
    assert hits[0].item.item_id == "t-1" and {h.item.tenant_id for h in hits} == {A}

    dup = created(A, "t-4", "Namenode crash at restart when the disk is full",
                  "After a full disk the NameNode does not come back up: edit log replay fails.")
    publisher.publish(dup)
    publisher.flush()
    out = [decode(m.value) for m in drain(settings.kafka, registry.physical("predictions.nlp"), 1)]
    assert len(out) == 1 and out[0].nlp_prediction.kind == "duplicates"
    assert out[0].nlp_prediction.subject_id == "t-4" and out[0].tenant_id == A
    assert [d.item_id for d in out[0].nlp_prediction.duplicates] == ["t-1"]

    dlq = drain(settings.kafka, registry.physical("dlq"), 2)
    assert len(dlq) == 2 and all(dict(m.headers).get("dlq.reason") for m in dlq)

    publisher.publish(new_envelope(A, e.TenantErased(reason="offboarding", requested_by="admin"), producer="test"))
    publisher.flush()
    wait_until(lambda: svc.index.count(A) == 0, "tenant A to be erased", 60)
    assert svc.index.count(B) == 1
    assert svc.searcher.search(A, "namenode restart", 5)[0] == []
