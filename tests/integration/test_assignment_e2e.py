"""End to end on the real broker and Redis: simulator events in -> the service's state in Redis -> one
prediction per new task, each with provenance stamped from the rows it ranked on; a malformed task event
goes to the DLQ and the service goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC

import pytest
from sunday.ml.v1 import events_pb2

from mesh.bus import ConsumerRunner, KafkaConsumerTransport, KafkaPublisher, RunnerOptions, ensure_topics
from mesh.config import MeshSettings
from mesh.events import TopicRegistry, decode, new_envelope, occurred_at
from services.assignment.ranker import MODEL_NAME
from services.assignment.state import StateStore
from tests.support import drain
from tests.unit.assignment.helpers import Service, World, build_service, small_world

pytestmark = pytest.mark.integration
TOPICS = ("tasks", "users", "projects")
WAIT_S = 60.0


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return small_world(tmp_path_factory.mktemp("assignment-e2e"))


@pytest.fixture
def service(settings: MeshSettings, world: World, assignment_state: StateStore,
            ) -> Iterator[tuple[KafkaPublisher, TopicRegistry, Service]]:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "predictions.assignment", "dlq"])
    publisher = KafkaPublisher(settings.kafka, registry)
    parts = build_service(world.static_model(), state=assignment_state)
    runner = ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, "assignment"), publisher=publisher,
                            topics=TOPICS, group_id="assignment", batch_handler=parts.handler(publisher),
                            options=RunnerOptions(poll_timeout_s=0.2))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    yield publisher, registry, parts
    runner.stop()
    thread.join(30)
    publisher.close()


def test_simulated_events_in_predictions_out(service: tuple[KafkaPublisher, TopicRegistry, Service],
                                             world: World, settings: MeshSettings,
                                             span_exporter: object) -> None:
    publisher, registry, parts = service
    accepted = {t for n in TOPICS for t in registry.spec(n).event_types}
    events = [ev for ev in world.events if ev.type in accepted]
    first_task = next(i for i, ev in enumerate(events) if ev.type == "task_created")
    setup = [ev for ev in events[:first_task] if ev.type not in registry.spec("tasks").event_types]
    for ev in setup:
        publisher.publish(ev)
    publisher.flush()
    # people must be known before tasks come (topics are not ordered with each other): wait for them
    joined = {(ev.tenant_id, ev.user_joined.user_id) for ev in setup if ev.type == "user_joined"}
    assert wait_for_people(parts, joined)
    tasks = [ev for ev in events[first_task:first_task + 40] if ev.type in registry.spec("tasks").event_types]
    bad = new_envelope("tenant-000", events_pb2.TaskCreated(task_id="bad", project_id="p", priority=42),
                       producer="test")
    for ev in tasks[:20]:
        publisher.publish(ev)
    publisher.publish_raw("tasks", b"\x08garbage", b"tenant-000:x", [])
    publisher.publish_raw("tasks", bad.SerializeToString(), b"tenant-000:bad", [])
    for ev in tasks[20:]:
        publisher.publish(ev)
    publisher.flush()
    created = {ev.task_created.task_id for ev in tasks if ev.type == "task_created"}
    out = [decode(m.value) for m in drain(settings.kafka, registry.physical("predictions.assignment"), len(created))]
    assert {env.assignment_prediction.task_id for env in out} == created
    for env in out:
        prov = env.assignment_prediction.provenance
        assert prov.model_name == MODEL_NAME and prov.model_version and len(prov.trace_id) == 32
        assert "person_features" in prov.feature_timestamps and env.assignment_prediction.candidates
    # stamped from the task rows ranked on: from the task's creation up to the row now
    created_at = {ev.task_created.task_id: occurred_at(ev) for ev in tasks if ev.type == "task_created"}
    for env in out:
        p = env.assignment_prediction
        task = parts.state.task(env.tenant_id, p.task_id)
        stamp = p.provenance.feature_timestamps["task_features"].ToDatetime(UTC)
        assert task is not None and created_at[p.task_id] <= stamp <= task.as_of
    dlq = drain(settings.kafka, registry.physical("dlq"), 2)
    assert len(dlq) == 2 and all(dict(m.headers).get("dlq.reason") for m in dlq)


def wait_for_people(parts: Service, joined: set[tuple[str, str]]) -> bool:
    """Bounded wait until every person who joined has a row in the service's state."""
    tenants = {t for t, _ in joined}
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        known = {(t, p.user_id) for t in tenants
                 for p in parts.state.people(t, [u for tt, u in joined if tt == t])}
        if joined <= known:
            return True
        threading.Event().wait(0.1)  # a poll interval, not a timing assumption
    return False
