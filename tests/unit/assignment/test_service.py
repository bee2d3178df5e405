"""The service in process: events through the runner -> predictions with provenance; malformed -> DLQ;
gRPC RankAssignees, unknown tenant/task -> NOT_FOUND."""

from __future__ import annotations

from datetime import UTC

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sunday.ml.v1 import assignment_pb2, assignment_pb2_grpc, events_pb2

from mesh.bus import ConsumerRunner, InMemoryBroker, Publisher, RunnerOptions
from mesh.config import MeshSettings
from mesh.events import TopicRegistry, decode, encode, new_envelope
from mesh.serving import build_server
from services.assignment.ranker import MODEL_NAME
from services.assignment.server import binding
from services.assignment.state import PersonState
from tests.unit.assignment.helpers import CountingStore, World, build_service

TOPICS = ("tasks", "users", "projects")


def run_service(world: World, extra_raw: list[bytes]) -> tuple[InMemoryBroker, TopicRegistry, int]:
    """People and projects first (topics are not ordered between each other), then the task stream."""
    broker, registry = InMemoryBroker(), TopicRegistry("unit.")
    publisher = Publisher(broker.producer(), registry)
    events = [ev for ev in world.events if ev.type in {t for n in TOPICS for t in registry.spec(n).event_types}]
    first_task = next(i for i, ev in enumerate(events) if ev.type == "task_created")
    setup = [ev for ev in events[:first_task] if ev.type not in registry.spec("tasks").event_types]
    tasks = [ev for ev in events[first_task:first_task + 60] if ev.type in registry.spec("tasks").event_types]
    handler = build_service(world.static_model()).handler(publisher)
    for batch, raw in ((setup, []), (tasks, extra_raw)):
        for ev in batch:
            publisher.publish(ev)
        for value in raw:
            publisher.publish_raw("tasks", value, b"t:x", [])
        ConsumerRunner(consumer=broker.consumer("assignment"), publisher=publisher, topics=TOPICS,
                       group_id="assignment", batch_handler=handler,
                       options=RunnerOptions(max_messages=len(batch) + len(raw), poll_timeout_s=0.05)).run()
    return broker, registry, sum(ev.type == "task_created" for ev in tasks)


def test_every_new_task_gets_a_prediction_with_provenance(world: World, span_exporter: InMemorySpanExporter) -> None:
    broker, registry, created = run_service(world, [])
    out = [decode(m.value) for m in broker.messages(registry.physical("predictions.assignment"))]
    assert created > 0 and len(out) == created
    for env in out:
        p = env.assignment_prediction
        assert 0 < len(p.candidates) <= 5
        assert [c.score for c in p.candidates] == sorted((c.score for c in p.candidates), reverse=True)
        assert all(c.reasons and c.reasons[0].description for c in p.candidates)
        assert p.provenance.model_name == MODEL_NAME and p.provenance.model_version == "7"
        assert len(p.provenance.trace_id) == 32 and set(p.provenance.feature_timestamps) == {
            "person_features", "task_features"}


def test_malformed_task_events_go_to_the_dlq_and_the_service_goes_on(world: World) -> None:
    bad = new_envelope("tenant-000", events_pb2.TaskCreated(task_id="bad", project_id="p", priority=9),
                       producer="test")
    broker, registry, created = run_service(world, [b"\x00not-protobuf", bad.SerializeToString()])
    assert len(broker.messages(registry.physical("dlq"))) == 2
    assert len(broker.messages(registry.physical("predictions.assignment"))) == created


@pytest.fixture
async def stub(world: World):  # type: ignore[no-untyped-def]
    service = build_service(world.static_model())
    service.apply(world.events[:400])
    server = build_server([binding(service.ranker)], MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield assignment_pb2_grpc.AssignmentServiceStub(channel), service.state
    await server.stop(0)


async def test_rank_assignees_by_task_id_and_by_payload(stub, world: World) -> None:  # type: ignore[no-untyped-def]
    client, store = stub
    task_id = next(ev.task_created.task_id for ev in world.events[:400] if ev.type == "task_created")
    got = await client.RankAssignees(assignment_pb2.RankAssigneesRequest(tenant_id="tenant-000", task_id=task_id, k=3))
    assert len(got.prediction.candidates) == 3 and got.prediction.task_id == task_id
    people = store.active_ids("tenant-000")[:4]
    payload = assignment_pb2.TaskPayload(task_id="new", project_id="p", task_type="bug", required_skills=["python"])
    got = await client.RankAssignees(assignment_pb2.RankAssigneesRequest(tenant_id="tenant-000", payload=payload,
                                                                         candidate_ids=people))
    assert {c.user_id for c in got.prediction.candidates} <= set(people) and len(got.prediction.candidates) == 4


@pytest.mark.parametrize(("tenant", "task"), [("no-such-tenant", "t-1"), ("tenant-000", "no-such-task")])
async def test_unknown_tenant_or_task_is_not_found(stub, tenant: str, task: str) -> None:  # type: ignore[no-untyped-def]
    client, _ = stub
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.RankAssignees(assignment_pb2.RankAssigneesRequest(tenant_id=tenant, task_id=task))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_contract_examples_pass_through_the_handler(world: World) -> None:
    registry = TopicRegistry("unit.")
    broker = InMemoryBroker()
    handler = build_service(world.static_model()).handler(Publisher(broker.producer(), registry))
    for name in TOPICS:
        for ev in registry.examples(name):
            encode(ev)
            handler([ev])  # none raises: every declared example is a valid input


def test_ranking_reads_the_rows_in_one_batch_and_stamps_their_event_times(world: World) -> None:
    service = build_service(world.static_model())
    events = [ev for ev in world.events[:600] if ev.tenant_id == "tenant-000"]
    service.apply(events)
    task_id = [ev.task_created.task_id for ev in events if ev.type == "task_created"][-1]
    people = service.state.active_ids("tenant-000")
    store = service.state.store
    assert isinstance(store, CountingStore)
    store.reads.clear()
    prediction = service.ranker.rank_assignees("tenant-000", task_id, k=3)
    assert (PersonState.kind, len(people)) in store.reads and len(people) > 3
    assert sum(n for kind, n in store.reads if kind == PersonState.kind) == len(people)  # one batched read
    rows = service.state.people("tenant-000", people)
    task = service.state.task("tenant-000", task_id)
    stamps = prediction.provenance.feature_timestamps
    assert stamps["person_features"].ToDatetime(UTC) == max(r.as_of for r in rows)
    assert task is not None and stamps["task_features"].ToDatetime(UTC) == task.as_of


def test_each_prediction_continues_its_own_inputs_trace_in_a_batch(world: World,
                                                                   span_exporter: InMemorySpanExporter) -> None:
    from opentelemetry import trace

    broker, registry = InMemoryBroker(), TopicRegistry("unit.")
    publisher = Publisher(broker.producer(), registry)
    events = [ev for ev in world.events if ev.type in {t for n in TOPICS for t in registry.spec(n).event_types}]
    first_task = next(i for i, ev in enumerate(events) if ev.type == "task_created")
    setup = [ev for ev in events[:first_task] if ev.type not in registry.spec("tasks").event_types]
    tasks = [ev for ev in events[first_task:] if ev.type == "task_created" and ev.tenant_id == "tenant-000"][:3]
    handler = build_service(world.static_model()).handler(publisher)
    for ev in setup:
        publisher.publish(ev)
    ConsumerRunner(consumer=broker.consumer("assignment"), publisher=publisher, topics=TOPICS, group_id="assignment",
                   batch_handler=handler, options=RunnerOptions(max_messages=len(setup), poll_timeout_s=0.05)).run()
    traces = {}
    for ev in tasks:  # three backend requests, three traces, consumed in one batch
        with trace.get_tracer("sunday.backend").start_as_current_span("backend.create_task") as root:
            publisher.publish(ev)
        traces[ev.task_created.task_id] = format(root.get_span_context().trace_id, "032x")
    ConsumerRunner(consumer=broker.consumer("assignment"), publisher=publisher, topics=TOPICS, group_id="assignment",
                   batch_handler=handler, options=RunnerOptions(max_messages=len(tasks), poll_timeout_s=0.05)).run()
    out = broker.messages(registry.physical("predictions.assignment"))
    assert len(out) == len(tasks) == len(set(traces.values()))
    for message in out:
        prediction = decode(message.value).assignment_prediction
        parent = dict(message.headers)["traceparent"].decode().split("-")[1]
        assert parent == prediction.provenance.trace_id == traces[prediction.task_id]
