"""The faust window worker on the real broker: SIGKILL mid-window, restart, no window lost or double-counted.

The worker is killed after it has counted (and committed) the first half of a window's events; the second
half is published while it is down, together with a redelivery of an already counted event. After the
restart the table's changelog must hold, for every window, exactly the events the pure model counts: a
worker that did not restore its windows from the changelog would overwrite them with the second half only,
and one that counted the redelivery would be one too high. A malformed message goes to the DLQ with
its reason.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, new_envelope
from services.anomaly.windows import WindowState, apply, summary, updates
from services.anomaly.windows_app import TABLE
from tests.support import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


def _events() -> list[Envelope]:
    out = []
    for i in range(80):  # 80 events within 10:00-11:20: the 1 h windows straddle the kill
        user = f"u{i % 4}"
        action = ("login", "edit", "export", "api_call")[i % 4]
        out.append(new_envelope("tn-w", e.UserActivity(user_id=user, action=action, count=1 + i % 7),
                                producer="tests", occurred_at=T0 + timedelta(minutes=i)))
    out += [new_envelope("tn-w", e.TaskCreated(task_id=f"t{i}", project_id="p1"), producer="tests",
                         occurred_at=T0 + timedelta(minutes=5 * i)) for i in range(10)]
    return out


def _expected(events: list[Envelope]) -> dict[str, dict[str, tuple[int, float]]]:
    states: dict[str, WindowState] = {}
    for env in events:
        for key, adds in updates(env).items():
            states[key], _ = apply(states.get(key), env.event_id, adds)
    return {k: summary(v) for k, v in states.items()}


def _worker(prefix: str, datadir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "services.anomaly.windows_app", "--datadir", str(datadir),
                             "worker", "-l", "error", "--without-web"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'gen'}",
                                 "MESH_KAFKA__TOPIC_PREFIX": prefix})


class Changelog:
    """The latest value per key of the table's changelog topic (read from the beginning)."""

    def __init__(self, settings: MeshSettings, topic: str) -> None:
        self.topic = topic
        self.state: dict[str, WindowState] = {}
        self.consumer = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers,
                                  "group.id": f"{topic}-reader", "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False})
        self.consumer.subscribe([topic])

    def poll(self) -> dict[str, dict[str, tuple[int, float]]]:
        for msg in self.consumer.consume(500, 0.5):
            if msg.error() is None and msg.value() is not None:
                self.state[json.loads(msg.key())] = json.loads(msg.value())
        return {k: summary(v) for k, v in self.state.items()}


def _committed(settings: MeshSettings, group: str, topics: list[tuple[str, int]]) -> int:
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": group})
    try:
        tps = c.committed([TopicPartition(t, p) for t, n in topics for p in range(n)], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def _dlq(settings: MeshSettings, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": f"{topic}-reader",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out: list[tuple[bytes, dict[str, bytes]]] = []
    try:
        for _ in range(20):  # bounded: the DLQ record was flushed before the windows were complete
            for msg in c.consume(100, 0.5):
                if msg.error() is None:
                    out.append((bytes(msg.value() or b""), {k: bytes(v or b"") for k, v in msg.headers() or []}))
            if out:
                break
    finally:
        c.close()
    return out


def _stop(worker: subprocess.Popen[str]) -> str:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        out, _ = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        out, _ = worker.communicate()
    return out or ""


def test_windows_survive_sigkill_mid_window(settings: MeshSettings, tmp_path: Path) -> None:
    prefix = settings.kafka.topic_prefix
    registry = TopicRegistry(prefix)
    ensure_topics(settings.kafka, registry, ["activity", "tasks", "dlq"])
    pub = KafkaPublisher(settings.kafka, registry)
    events = _events()
    first, second = events[:45], events[45:]
    for env in first:
        pub.publish(env)
    pub.publish_raw("activity", b"\x00not an envelope", b"tn-w:u0", [])  # -> the DLQ
    pub.flush()
    app_id = f"{prefix}anomaly-windows"
    log = Changelog(settings, f"{app_id}-{TABLE}-changelog")
    sources = [(registry.physical(n), registry.spec(n).partitions) for n in ("activity", "tasks")]
    worker = _worker(prefix, tmp_path)
    try:
        expected_first = _expected(first)
        wait_until(lambda: log.poll() == expected_first or worker.poll() is not None, "first half counted",
                   timeout_s=150)
        wait_until(lambda: _committed(settings, app_id, sources) >= len(first), "first half committed",
                   timeout_s=60)
        worker.send_signal(signal.SIGKILL)  # mid-window: 10:00-11:00 has events on both sides of the kill
        worker.wait(timeout=30)
        for env in [*second, first[3]]:  # first[3]: a redelivery of an event counted before the kill
            pub.publish(env)
        pub.flush()
        worker = _worker(prefix, tmp_path)
        expected = _expected(events)
        wait_until(lambda: log.poll() == expected or worker.poll() is not None,
                   "every window complete after the restart", timeout_s=150)
        assert log.poll() == expected
        dead = _dlq(settings, registry.physical("dlq"))
        assert [(v, h.get("dlq.reason", b"")[:12]) for v, h in dead] == [(b"\x00not an envelope", b"not a sunday")]
        hour = int(T0.timestamp())
        assert expected[f"tn-w|tenant|tn-w|tumbling_1h|{hour}"]["login"][0] == 15  # 60 minutes / 4 actions
    finally:
        out = _stop(worker)
        log.consumer.close()
    assert "Traceback" not in out, out[-3000:]
