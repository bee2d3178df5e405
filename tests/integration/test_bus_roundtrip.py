"""Round trips through the real broker: a faust agent (aiokafka), one trace across Kafka, bad configs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import (
    BrokerUnavailable,
    ConsumerRunner,
    KafkaConsumerTransport,
    KafkaPublisher,
    RunnerOptions,
    ensure_topics,
)
from mesh.config import KafkaSettings, MeshSettings
from mesh.events import Envelope, TopicRegistry, new_envelope
from mesh.telemetry import names

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _task(i: int) -> Envelope:
    return new_envelope("tenant-r", e.TaskCreated(task_id=f"t{i}", project_id="p"), producer="tests")


def test_faust_agent_round_trip(settings: MeshSettings, tmp_path: Path) -> None:
    prefix = settings.kafka.topic_prefix
    registry = TopicRegistry(prefix)
    ensure_topics(settings.kafka, registry, ["tasks"])
    pub = KafkaPublisher(settings.kafka, registry)
    sent = [_task(i) for i in range(20)]
    for env in sent:
        pub.publish(env)
    pub.flush()
    worker = subprocess.Popen([sys.executable, "-m", "tests.integration._faust_echo", prefix,
                               "--datadir", str(tmp_path / "faust"), "worker", "-l", "warn", "--without-web"],
                              cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"})
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"{prefix}reader",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([f"{prefix}faust.echo"])
    echoed: set[str] = set()
    try:
        for _ in range(240):  # bounded: at most ~120 s, the faust worker's start-up included
            for msg in consumer.consume(100, 0.5):
                if msg.error() is None:
                    echoed.add(bytes(msg.value() or b"").decode())
            if len(echoed) >= len(sent) or worker.poll() is not None:
                break
    finally:
        consumer.close()
        worker.terminate()
        try:
            out, _ = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            out, _ = worker.communicate()
    assert echoed == {env.event_id for env in sent}, out[-3000:]


def test_one_trace_from_producer_span_to_handler_span(settings: MeshSettings,
                                                      span_exporter: InMemorySpanExporter) -> None:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, ["tasks"])
    pub = KafkaPublisher(settings.kafka, registry)
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("backend.create_task") as root:
        pub.publish(_task(1))
    pub.flush()
    trace_id = root.get_span_context().trace_id
    seen: list[str] = []
    ConsumerRunner(consumer=KafkaConsumerTransport(settings.kafka, f"trace-{settings.kafka.topic_prefix}"),
                   publisher=pub, topics=["tasks"], group_id="trace", handler=lambda env: seen.append(env.event_id),
                   options=RunnerOptions(max_messages=1, poll_timeout_s=0.2, idle_timeout_s=30)).run()
    assert len(seen) == 1
    spans = {s.name: s for s in span_exporter.get_finished_spans() if s.context.trace_id == trace_id}
    publish, handle = spans[names.SPAN_PUBLISH], spans[names.SPAN_HANDLE]
    assert handle.context.trace_id == trace_id
    assert handle.parent is not None and handle.parent.span_id == publish.context.span_id
    assert publish.parent is not None and publish.parent.span_id == root.get_span_context().span_id


@pytest.mark.timeout(30)
def test_unreachable_broker_fails_fast_with_a_clear_error() -> None:
    bad = KafkaSettings(bootstrap_servers="127.0.0.1:1", connect_timeout_s=3)
    with pytest.raises(BrokerUnavailable, match=r"cannot reach Kafka at 127\.0\.0\.1:1 within 3s"):
        KafkaPublisher(bad)
    with pytest.raises(BrokerUnavailable, match="is the broker running"):
        KafkaConsumerTransport(KafkaSettings(bootstrap_servers="no-such-host.invalid:9092", connect_timeout_s=3), "g")


def test_bad_port_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="invalid port"):
        KafkaSettings(bootstrap_servers="127.0.0.1:70000")
    with pytest.raises(ValidationError, match="not host:port"):
        KafkaSettings(bootstrap_servers="localhost")
