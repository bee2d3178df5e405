"""A small simulated world through the real broker via KafkaPublisher, read back with confluent_kafka."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest
from confluent_kafka import Consumer

from mesh.bus import KafkaPublisher
from mesh.config import MeshSettings
from mesh.events import TopicRegistry, decode, partition_key
from simulator import SimConfig, Simulation
from simulator._run import run
from simulator._sinks import PublisherSink

pytestmark = pytest.mark.integration


def _read_back(settings: MeshSettings, topics: list[str], expected: int, deadline_s: float = 60.0) -> list[tuple]:
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"sim-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(topics)
    got: list[tuple] = []
    deadline = time.monotonic() + deadline_s  # bounded polling, no sleeps
    try:
        while len(got) < expected and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=500, timeout=1.0):
                if msg.error() is None:
                    got.append((msg.topic(), msg.key(), msg.value()))
    finally:
        consumer.close()
    return got


def test_simulated_week_round_trips_through_kafka(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = MeshSettings()
    settings.kafka.topic_prefix = f"test-{uuid.uuid4().hex[:8]}."
    registry = TopicRegistry(settings.kafka.topic_prefix)
    config = SimConfig(users_per_tenant=12, weeks=1, seed=21)
    expected = list(Simulation(config).events())
    report = run(config, tmp_path, [PublisherSink(KafkaPublisher(settings.kafka, registry))])
    assert report.events == len(expected)

    topics = sorted({registry.physical(registry.for_event(env.type).logical) for env in expected})
    got = _read_back(settings, topics, len(expected))
    assert len(got) == len(expected)
    by_id = {env.event_id: env for env in expected}
    for topic, key, value in got:
        env = decode(value)
        assert env.SerializeToString() == by_id[env.event_id].SerializeToString()
        assert topic == registry.physical(registry.for_event(env.type).logical)
        assert key == partition_key(env)
    assert Counter(decode(v).type for _, _, v in got) == Counter(env.type for env in expected)
    # order holds per entity (tenant:entity key) within a topic
    sent: dict[tuple[str, bytes], list[str]] = {}
    for env in expected:
        topic = registry.physical(registry.for_event(env.type).logical)
        sent.setdefault((topic, partition_key(env)), []).append(env.event_id)
    received: dict[tuple[str, bytes], list[str]] = {}
    for topic, key, value in got:
        received.setdefault((topic, key), []).append(decode(value).event_id)
    assert received == sent
