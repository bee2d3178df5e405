"""The timeline service in process: simulated events through the runner -> a TimelinePrediction per
event on an open task (with provenance), project forecasts, at most one alert per dedup key; a malformed
event goes to the DLQ and the service goes on; gRPC PredictTask/PredictProject, unknown ids -> NOT_FOUND."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import grpc
import grpc.aio
import pytest
from sunday.ml.v1 import events_pb2, timeline_pb2, timeline_pb2_grpc

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions
from mesh.config import MeshSettings, ModelSettings
from mesh.events import Envelope, TopicRegistry, decode, new_envelope
from mesh.models import OnnxModel, StaticModel, VersionedModel
from mesh.serving import build_server
from services.timeline.alerts import AlertPolicy, DeadlineRiskAlerter, InMemoryAlertState
from services.timeline.export import export_untrained
from services.timeline.handlers import TASK_EVENTS, TimelineHandler
from services.timeline.predictor import MODEL_NAME, TimelinePredictor
from services.timeline.server import binding
from services.timeline.state import InMemoryTimelineStore, apply_event

TOPICS = ("tasks", "projects", "users")
N_TASK_EVENTS = 60


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> StaticModel:
    path = export_untrained(tmp_path_factory.mktemp("timeline-model"))
    return StaticModel(VersionedModel(MODEL_NAME, "3", OnnxModel.load(path, ModelSettings())))


@pytest.fixture(scope="module")
def events() -> list[Envelope]:
    from simulator import SimConfig, Simulation

    accepted = {t for n in TOPICS for t in TopicRegistry().spec(n).event_types}
    stream = [ev for ev in Simulation(SimConfig(tenants=1, users_per_tenant=12, weeks=2, seed=5)).events()
              if ev.type in accepted]
    first_task = next(i for i, ev in enumerate(stream) if ev.type in TASK_EVENTS)
    tasks = [ev for ev in stream[first_task:] if ev.type in TASK_EVENTS][:N_TASK_EVENTS]
    return [ev for ev in stream[:first_task]] + tasks


def run_service(model: StaticModel, events: list[Envelope], extra_raw: list[bytes]) -> tuple[InMemoryBroker,
                                                                                               TopicRegistry]:
    """Setup (people, projects) first: topics are not ordered with each other; then the task stream."""
    broker, registry = InMemoryBroker(), TopicRegistry("unit.")
    publisher = Publisher(broker.producer(), registry)
    handler = TimelineHandler(TimelinePredictor(InMemoryTimelineStore(), model, simulations=200), publisher,
                              DeadlineRiskAlerter(InMemoryAlertState(), AlertPolicy(threshold=0.3, hysteresis=0.1)))
    setup = [ev for ev in events if ev.type not in TASK_EVENTS]
    tasks = [ev for ev in events if ev.type in TASK_EVENTS]
    for batch, raw in ((setup, []), (tasks, extra_raw)):
        for ev in batch:
            publisher.publish(ev)
        for value in raw:
            publisher.publish_raw("tasks", value, b"t:x", [])
        ConsumerRunner(consumer=broker.consumer("timeline"), publisher=publisher, topics=TOPICS, group_id="timeline",
                       handler=handler, options=RunnerOptions(max_messages=len(batch) + len(raw),
                                                              poll_timeout_s=0.05)).run()
    return broker, registry


def open_task_events(events: list[Envelope]) -> list[tuple[str, str]]:
    """(tenant, task id) of each task event after which the task is still open: one prediction each."""
    store, out = InMemoryTimelineStore(), []
    for ev in events:
        apply_event(store, ev)
        if ev.type in TASK_EVENTS:
            task = store.task(ev.tenant_id, getattr(ev, ev.type).task_id)
            if task is not None and task.is_open:
                out.append((ev.tenant_id, task.task_id))
    return out


def test_a_prediction_per_event_on_an_open_task_with_provenance(model: StaticModel, events: list[Envelope],
                                                               span_exporter: object) -> None:
    broker, registry = run_service(model, events, [])
    out = [decode(m.value) for m in broker.messages(registry.physical("predictions.timeline"))]
    tasks = [env for env in out if env.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK]
    expected = open_task_events(events)
    assert expected and sorted((e.tenant_id, e.timeline_prediction.entity_id) for e in tasks) == sorted(expected)
    for env in tasks:
        p = env.timeline_prediction
        assert 0 < p.remaining_hours_p10 <= p.remaining_hours_p50 <= p.remaining_hours_p90
        assert p.completion_p10.ToDatetime() <= p.completion_p50.ToDatetime() <= p.completion_p90.ToDatetime()
        assert p.provenance.model_name == MODEL_NAME and p.provenance.model_version == "3"
        assert len(p.provenance.trace_id) == 32 and "task_state" in p.provenance.feature_timestamps
    projects = [env for env in out if env.timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_PROJECT]
    assert projects and all(0 <= e.timeline_prediction.deadline_miss_probability <= 1 for e in projects)
    alerts = [decode(m.value).alert for m in broker.messages(registry.physical("alerts"))]
    assert max(Counter(a.dedup_key for a in alerts).values(), default=1) == 1  # no alert storm


def test_malformed_events_go_to_the_dlq_and_the_service_goes_on(model: StaticModel, events: list[Envelope]) -> None:
    bad = new_envelope("tenant-000", events_pb2.TaskCreated(task_id="bad", project_id="p", priority=9),
                       producer="test")
    broker, registry = run_service(model, events, [b"\x00not-protobuf", bad.SerializeToString()])
    dlq = broker.messages(registry.physical("dlq"))
    assert len(dlq) == 2
    tasks = [m for m in broker.messages(registry.physical("predictions.timeline"))
             if decode(m.value).timeline_prediction.entity_kind == events_pb2.ENTITY_KIND_TASK]
    assert len(tasks) == len(open_task_events(events))


@pytest.fixture
async def stub(model: StaticModel, events: list[Envelope]):  # type: ignore[no-untyped-def]
    store = InMemoryTimelineStore()
    for ev in events:
        apply_event(store, ev)
    server = build_server([binding(TimelinePredictor(store, model, simulations=200))], MeshSettings(), 0,
                          host="127.0.0.1")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield timeline_pb2_grpc.TimelineServiceStub(channel)
    await server.stop(0)


async def test_predict_task_and_project(stub, events: list[Envelope]) -> None:  # type: ignore[no-untyped-def]
    tenant, task_id = open_task_events(events)[-1]
    got = await stub.PredictTask(timeline_pb2.PredictTaskRequest(tenant_id=tenant, task_id=task_id))
    assert got.prediction.entity_id == task_id and got.prediction.remaining_hours_p50 > 0
    project_id = next(ev.task_created.project_id for ev in events if ev.type == "task_created")
    got_p = await stub.PredictProject(timeline_pb2.PredictProjectRequest(tenant_id=tenant, project_id=project_id,
                                                                       simulations=100))
    assert got_p.project.entity_id == project_id
    assert got_p.project.entity_kind == events_pb2.ENTITY_KIND_PROJECT


@pytest.mark.parametrize("which", ["task", "project", "tenant"])
async def test_unknown_ids_are_not_found(stub, which: str) -> None:  # type: ignore[no-untyped-def]
    tenant = "no-such-tenant" if which == "tenant" else "tenant-000"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if which == "project":
            await stub.PredictProject(timeline_pb2.PredictProjectRequest(tenant_id=tenant, project_id="nope"))
        else:
            await stub.PredictTask(timeline_pb2.PredictTaskRequest(tenant_id=tenant, task_id="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_state_round_trips_through_json(events: list[Envelope], tmp_path: Path) -> None:
    from services.timeline.state import PersonState, ProjectState, TaskState, from_json, to_json

    store = InMemoryTimelineStore()
    for ev in events:
        apply_event(store, ev)
    for (_, kind), rows in store.rows.items():
        cls = {"tasks": TaskState, "people": PersonState, "projects": ProjectState}[kind]
        for row in rows.values():
            assert from_json(cls, to_json(row)) == row
