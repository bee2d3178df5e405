"""The runtime guarantees on a REAL service process (``python -m services.timeline``, its real handler,
broker and Redis): a dead consumer is a dead service (exit code 3 with the reason), and a Redis outage is
not poison (held, not dead-lettered, every task predicted once Redis is back)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sunday.ml.v1 import events_pb2

from mesh.bus import KafkaPublisher, Message, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, decode
from tests.services_harness import (
    PrivateRedis,
    Registry,
    ServiceProcess,
    free_port,
    register_champions,
    service_env,
)
from tests.support import drain, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
OUTAGE_S = 10.0
"""How long Redis stays away in the outage test (the issue's scenario)."""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A private MLflow registry whose timeline champion is an untrained model: enough to start."""
    return register_champions(tmp_path_factory.mktemp("registry"), ("timeline",))


@dataclass
class Timeline:
    process: ServiceProcess
    metrics_port: int

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


@pytest.fixture
def start_timeline(settings: MeshSettings, registry: Registry, tmp_path: Path) -> Iterator[Callable[..., Timeline]]:
    """Starts ``python -m services.timeline`` (tests/services_harness.py) on this test's topics; stopped at
    the end if still running."""
    started: list[ServiceProcess] = []

    def start(redis_url: str = settings.redis.url, **extra: str) -> Timeline:
        metrics_port = free_port()
        env = service_env(registry, redis_url, settings.kafka.bootstrap_servers, settings.kafka.topic_prefix,
                          tmp_path / "offline", MESH_TELEMETRY__METRICS_PORT=str(metrics_port),
                          MESH_SIMULATIONS="200", **extra)
        process = ServiceProcess("timeline", env, tmp_path / "logs")
        started.append(process)
        process.start()
        process.wait_serving(240)
        return Timeline(process, metrics_port)

    yield start
    for process in started:
        process.close()


def _created_tasks(n: int, seed: int = 11) -> list[Envelope]:
    from simulator import SimConfig, Simulation

    stream = Simulation(SimConfig(tenants=1, users_per_tenant=20, weeks=2, seed=seed)).events()
    return [ev for ev in stream if ev.type == "task_created"][:n]


def _predicted(messages: list[Message]) -> set[str]:
    return {p.entity_id for p in (decode(m.value).timeline_prediction for m in messages)
            if p.entity_kind == events_pb2.ENTITY_KIND_TASK}


def test_a_consumer_stopped_by_the_dead_letter_cap_takes_the_service_down(
        settings: MeshSettings, start_timeline: Callable[..., Timeline]) -> None:
    service = start_timeline(MESH_BUS__DLQ_MAX_CONSECUTIVE="3")
    publisher = KafkaPublisher(settings.kafka, TopicRegistry(settings.kafka.topic_prefix))
    for i in range(6):  # more invalid records in a row than the cap
        publisher.publish_raw("tasks", b"\x08garbage", f"tenant-000:x{i}".encode(), [])
    publisher.flush()
    wait_until(lambda: service.process.reap() is not None, "the service to exit after its consumer died", 120)
    out = service.process.log_text()
    assert service.process.exits == [3], out[-3000:]
    assert "DeadLetterCapExceeded" in out and "in a row" in out
    assert "consumer died" in out and "NOT_SERVING" in out
    publisher.close()


def test_a_redis_outage_holds_the_stream_and_every_task_is_predicted_after(
        settings: MeshSettings, start_timeline: Callable[..., Timeline], tmp_path: Path) -> None:
    with PrivateRedis(tmp_path / "redis") as redis_server:  # the shared Redis stays up for everybody else
        service = start_timeline(redis_server.url)
        registry = TopicRegistry(settings.kafka.topic_prefix)
        publisher = KafkaPublisher(settings.kafka, registry)
        tasks = _created_tasks(40)
        assert len(tasks) == 40
        before, during = tasks[:10], tasks[10:]
        for env in before:
            publisher.publish(env)
        publisher.flush()
        topic = registry.physical("predictions.timeline")
        want_before = {ev.task_created.task_id for ev in before}
        first = drain(settings.kafka, topic, 100, lambda ms: want_before <= _predicted(ms), timeout_s=120)
        assert want_before <= _predicted(first)

        redis_server.stop()
        went_down = time.monotonic()
        for env in during:  # the stream goes on while Redis is away
            publisher.publish(env)
        publisher.flush()
        wait_until(lambda: service.metric("mesh_consumer_backpressure") >= 1, "the consumer to hold the batch", 60)
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - went_down)))  # the rest of the outage (the scenario)
        assert service.process.alive(), "the service died during the outage"
        redis_server.start()

        want = {ev.task_created.task_id for ev in tasks}
        out = drain(settings.kafka, topic, 1000, lambda ms: want <= _predicted(ms), timeout_s=180)
        assert want <= _predicted(out), f"{len(want - _predicted(out))} task(s) never predicted"
        assert drain(settings.kafka, registry.physical("dlq"), 1, timeout_s=5) == []
        assert service.process.serving()
        assert service.metric("mesh_consumer_backpressure_retries_total") >= 1
        wait_until(lambda: service.metric("mesh_consumer_backpressure") == 0, "the hold to be released", 60)
        assert "partitions paused, lag grows" in service.process.log_text()
        publisher.close()


def test_the_gateway_worker_exits_non_zero_when_its_consumer_dies(settings: MeshSettings, unique: str,
                                                                  tmp_path: Path) -> None:
    """``python -m gateway worker``: more invalid records in a row than the dead-letter cap (100) on a
    delivered topic stop its consumer; the process exits 3 with the reason instead of idling on."""
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, ["predictions.assignment", "dlq"])
    publisher = KafkaPublisher(settings.kafka, registry)
    for i in range(110):
        publisher.publish_raw("predictions.assignment", b"\x08garbage", f"tenant-000:x{i}".encode(), [])
    publisher.flush()
    log = tmp_path / "worker.log"  # the harness runs services; the worker is `python -m gateway worker`
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "worker"], cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "MESH_ENVIRONMENT": "test", "MESH_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
             "MESH_REDIS_PREFIX": f"test-gw-{unique}:", "MESH_WEBHOOKS__CONSUMER_GROUP": f"test-gw-{unique}",
             "MESH_TELEMETRY__METRICS_PORT": str(free_port())})
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the worker kept running after its consumer died:\n{log.read_text()[-3000:]}") from None
    out = log.read_text(errors="replace")
    assert proc.returncode == 3, out[-3000:]
    assert "DeadLetterCapExceeded" in out and "gave up" in out
    publisher.close()
