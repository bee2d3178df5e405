"""End to end, one trace throughout: a backend publishes task events -> the assignment service (real
handler, model, Kafka consumer and gRPC server) -> a prediction on Kafka -> the gateway's webhook worker
-> a signed POST to a subscriber; and the frontend's REST call -> gateway -> gRPC in one trace."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sunday.ml.v1 import common_pb2, events_pb2

from gateway.devtools import harness
from gateway.webhooks import signing
from mesh.bus import ConsumerRunner, KafkaConsumerTransport, KafkaPublisher, RunnerOptions, ensure_topics
from mesh.config import MeshSettings
from mesh.events import TopicRegistry, new_envelope
from mesh.serving import build_server
from services.assignment.server import binding
from tests.support import Receiver, await_until, webhook_receiver
from tests.unit.assignment.helpers import build_service, static_model, tiny_model

pytestmark = pytest.mark.integration
TENANT = "tenant-e2e"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as state:
        yield state


def _backend_events() -> list[events_pb2.Envelope]:
    people = [events_pb2.UserJoined(user_id=f"u{i}", display_name=f"P{i}", role="engineer", seniority=2 + i % 3,
                                    capacity_hours_per_week=35,
                                    skills=[common_pb2.Skill(name=s, level=1 + (i + j) % 5)
                                            for j, s in enumerate(("python", "sql", "design"))])
              for i in range(6)]
    project = events_pb2.ProjectCreated(project_id="proj-e2e", name="Checkout", owner_id="u0",
                                        member_ids=[f"u{i}" for i in range(6)])
    return [new_envelope(TENANT, p, producer="sunday.backend") for p in (*people, project)]


def _task() -> events_pb2.Envelope:
    return new_envelope(TENANT, events_pb2.TaskCreated(
        task_id="task-e2e", project_id="proj-e2e", title="Fix flaky checkout test", description="Times out on CI.",
        task_type="bug", priority=events_pb2.PRIORITY_HIGH, required_skills=["python"], estimate_hours=4),
        producer="sunday.backend")


async def test_task_event_to_signed_webhook_and_rest_call_each_in_one_trace(
        tmp_path: Path, receiver: Receiver, span_exporter: InMemorySpanExporter) -> None:
    service = build_service(static_model(tiny_model(tmp_path)))
    grpc_server = build_server([binding(service.ranker)], MeshSettings(), 0, host="127.0.0.1")
    await grpc_server.start()
    gw = harness.gateway_settings(worker=True, backend=f"127.0.0.1:{grpc_server.port}")
    registry = TopicRegistry(gw.kafka.topic_prefix)
    ensure_topics(gw.kafka, registry)
    publisher = KafkaPublisher(gw.kafka, registry)
    runner = ConsumerRunner(consumer=KafkaConsumerTransport(gw.kafka, f"{gw.kafka.topic_prefix}assignment"),
                            publisher=publisher, topics=["users", "projects", "tasks"], group_id="assignment",
                            batch_handler=service.handler(publisher), options=RunnerOptions(poll_timeout_s=0.2))
    consumer = threading.Thread(target=runner.run, daemon=True)
    consumer.start()
    try:
        async with harness.lifespan_client(harness.build(gw)) as http:
            auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, TENANT))}"}
            created = await http.post("/v1/webhooks", headers=auth,
                                      json={"url": receiver.url, "event_types": ["assignment_prediction"]})
            assert created.status_code == 201, created.text
            secret = str(created.json()["secret"])

            for env in _backend_events():
                publisher.publish(env)
            publisher.flush()
            await await_until(lambda: service.state.person(TENANT, "u5") is not None, "people consumed")
            with trace.get_tracer("sunday.backend").start_as_current_span("backend.create_task") as root:
                publisher.publish(_task())
            publisher.flush()
            trace_id = format(root.get_span_context().trace_id, "032x")

            await await_until(lambda: receiver.calls, "the webhook delivery")
            headers, body = receiver.calls[0]
            assert signing.verify(secret, headers["sunday-webhook-timestamp"], body,
                                  headers["sunday-webhook-signature"], now=time.time())
            assert b'"task_id": "task-e2e"' in body and b'"user_id": "u' in body
            assert headers["traceparent"].split("-")[1] == trace_id  # the subscriber can continue the trace
            assert f'"trace_id": "{trace_id}"'.encode() in body      # provenance names the same trace

            ranked = await http.post("/v1/assignment/rank", json={"task_id": "task-e2e", "k": 3}, headers=auth)
            assert ranked.status_code == 200, ranked.text
            assert len(ranked.json()["candidates"]) == 3
    finally:
        runner.stop()
        consumer.join(30)
        publisher.close()
        await grpc_server.stop()
    spans = span_exporter.get_finished_spans()
    rest_trace = {s.context.trace_id for s in spans if s.name.startswith("POST /v1/assignment/rank")}
    grpc_server_traces = {s.context.trace_id for s in spans
                          if s.name == "/sunday.ml.v1.AssignmentService/RankAssignees"
                          and s.kind == trace.SpanKind.SERVER}
    assert rest_trace and rest_trace <= grpc_server_traces  # HTTP span and the gRPC server span: one trace
