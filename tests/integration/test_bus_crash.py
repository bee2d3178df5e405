"""A consumer SIGKILLed in the middle of a batch and restarted: every event handled, no effect applied twice.
Then SIGTERM: in-flight work finishes and is committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import TopicRegistry, new_envelope
from tests.support import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
N = 400


def _spawn(settings: MeshSettings, group: str, ns: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration._killable_consumer", settings.kafka.topic_prefix, group, ns],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)


def test_sigkill_mid_batch_then_restart_applies_every_effect_once(settings: MeshSettings, unique: str) -> None:
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, ["tasks", "dlq"])
    pub = KafkaPublisher(settings.kafka, registry)
    ids = []
    for i in range(N):
        env = new_envelope("tenant-k", e.TaskCreated(task_id=f"t{i}", project_id="p"), producer="tests")
        ids.append(env.event_id)
        pub.publish(env)
    pub.flush()
    r = redis.Redis.from_url(settings.redis.url, decode_responses=True)
    ns, group = f"crash-{unique}", f"crash-{unique}"
    calls = lambda: int(r.get(f"{ns}:calls") or 0)  # noqa: E731

    first = _spawn(settings, group, ns)
    try:
        wait_until(lambda: calls() >= 90, "the first consumer to get going", 60)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    killed_at = calls()
    assert killed_at < N, "the consumer finished before it could be killed; the test proves nothing"

    second = _spawn(settings, group, ns)
    try:
        wait_until(lambda: int(r.get(f"{ns}:applied") or 0) >= N, "every event to be handled", 90)
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
    finally:
        second.kill()
    assert second.returncode == 0, out
    assert int(r.get(f"{ns}:applied") or 0) == N
    applied = r.lrange(f"{ns}:ids", 0, -1)
    assert sorted(applied) == sorted(ids)  # every event once, none twice

    # SIGTERM committed everything: the group's committed offsets are the partitions' ends.
    topic = registry.physical("tasks")
    consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": group})
    try:
        parts = [TopicPartition(topic, p) for p in range(registry.spec("tasks").partitions)]
        committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in parts}
    finally:
        consumer.close()
    assert committed == ends and sum(ends.values()) == N
