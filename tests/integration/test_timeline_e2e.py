"""End to end on the real broker and Redis: simulator events in -> TimelinePrediction events out (one per
task creation, with provenance and the id derived from the creation) within a bounded wait, the state in
the mesh's Redis aggregate store; a malformed event goes to the DLQ."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sunday.ml.v1 import events_pb2

from mesh.bus import ConsumerRunner, KafkaConsumerTransport, KafkaPublisher, Message, RunnerOptions, ensure_topics
from mesh.config import MeshSettings, ModelSettings
from mesh.events import Envelope, TopicRegistry, decode, derived_event_id
from mesh.features import RedisAggregates
from mesh.models import OnnxModel, StaticModel, VersionedModel
from services.timeline.alerts import DEFAULT_POLICY, RiskTracker, output_reducers
from services.timeline.export import export_untrained
from services.timeline.handlers import TASK_EVENTS, TimelineHandler
from services.timeline.predictor import MODEL_NAME, TimelinePredictor
from services.timeline.state import TimelineState
from tests.support import drain

pytestmark = pytest.mark.integration
TOPICS = ("tasks", "projects", "users")
WAIT_S = 60.0


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> StaticModel:
    path = export_untrained(Path(tmp_path_factory.mktemp("timeline-e2e")))
    return StaticModel(VersionedModel(MODEL_NAME, "1", OnnxModel.load(path, ModelSettings())))


@pytest.fixture
def service(settings: MeshSettings, model: StaticModel) -> Iterator[tuple[KafkaPublisher, TopicRegistry]]:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*TOPICS, "predictions.timeline", "alerts", "dlq"])
    publisher = KafkaPublisher(settings.kafka, registry)
    client = redis.Redis.from_url(settings.redis.url)
    aggregates = RedisAggregates(client, f"test-{uuid.uuid4().hex[:8]}:timeline",
                                 reducers=output_reducers(DEFAULT_POLICY))
    state = TimelineState(aggregates)
    state.store.mark_built()  # a new namespace: nothing to rebuild
    predictor = TimelinePredictor(state, model, simulations=200)
    handler = TimelineHandler(predictor, state, publisher, RiskTracker(state))
    runner = ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, "timeline"), publisher=publisher,
                            topics=TOPICS, group_id="timeline", batch_handler=handler,
                            options=RunnerOptions(poll_timeout_s=0.2))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    yield publisher, registry
    runner.stop()
    thread.join(30)
    publisher.close()
    aggregates.clear()
    client.close()


def simulated_tasks() -> list[Envelope]:
    """The first task events of a small world (only task events: each predicts its own task)."""
    from simulator import SimConfig, Simulation

    stream = Simulation(SimConfig(tenants=1, users_per_tenant=10, weeks=1, seed=11)).events()
    return [ev for ev in stream if ev.type in TASK_EVENTS][:30]


def test_simulated_events_in_timeline_predictions_out(service: tuple[KafkaPublisher, TopicRegistry],
                                                      settings: MeshSettings, span_exporter: object) -> None:
    publisher, registry = service
    events = simulated_tasks()
    created = [ev for ev in events if ev.type == "task_created"]
    for ev in created:  # creations only: each leaves its task open, so each gets exactly one prediction
        publisher.publish(ev)
    publisher.publish_raw("tasks", b"\x08garbage", b"tenant-000:x", [])
    publisher.flush()
    want = {ev.task_created.task_id for ev in created}

    def all_tasks_predicted(messages: list[Message]) -> bool:
        return want <= {p.entity_id for p in (decode(m.value).timeline_prediction for m in messages)
                        if p.entity_kind == events_pb2.ENTITY_KIND_TASK}

    envelopes = [decode(m.value) for m in drain(settings.kafka, registry.physical("predictions.timeline"),
                                                10 * len(created), all_tasks_predicted)]
    out = [env.timeline_prediction for env in envelopes]
    tasks = [p.entity_id for p in out if p.entity_kind == events_pb2.ENTITY_KIND_TASK]
    assert created and sorted(tasks) == sorted(want)
    assert {env.event_id for env in envelopes if env.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK} \
        == {derived_event_id(ev.event_id, "timeline_prediction", f"{MODEL_NAME}:1", ev.task_created.task_id)
            for ev in created}
    for p in out:
        assert p.provenance.model_name == MODEL_NAME and len(p.provenance.trace_id) == 32
        assert 0 <= p.remaining_hours_p10 <= p.remaining_hours_p50 <= p.remaining_hours_p90
    dlq = drain(settings.kafka, registry.physical("dlq"), 1)
    assert len(dlq) == 1 and dict(dlq[0].headers).get("dlq.reason")
