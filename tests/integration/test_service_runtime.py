"""The runtime guarantees on a REAL service process (``python -m services.timeline``, its real handler,
broker and Redis): a dead consumer is a dead service (exit code 3 with the reason), and a Redis outage is
not poison (held, not dead-lettered, every task predicted once Redis is back)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sunday.ml.v1 import events_pb2

from mesh.bus import KafkaPublisher, Message, ensure_topics
from mesh.config import MeshSettings, ModelSettings
from mesh.events import Envelope, TopicRegistry, decode
from mesh.models import CHAMPION, ModelRegistry
from services.timeline.predictor import MODEL_NAME
from tests.support import drain, wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
OUTAGE_S = 10.0
"""How long Redis stays away in the outage test (the issue's scenario)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A private MLflow registry (sqlite) whose timeline champion is an untrained model: enough to start."""
    from services.timeline.export import export_untrained

    root = tmp_path_factory.mktemp("registry")
    models = ModelSettings.model_validate({"tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                                           "artifact_dir": root / "artifacts"})
    path = export_untrained(root)
    ModelRegistry(models).log_and_register(MODEL_NAME, path, {}, {"untrained": True},
                                           (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 8, tzinfo=UTC)),
                                           alias=CHAMPION)
    return {"MESH_MODELS__TRACKING_URI": models.tracking_uri, "MESH_MODELS__ARTIFACT_DIR": str(models.artifact_dir)}


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    metrics_port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def metric(self, name: str) -> float:
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def _serving(port: int) -> bool:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.fixture
def start_timeline(settings: MeshSettings, registry_env: dict[str, str], tmp_path: Path) -> Iterator[object]:
    """Starts ``python -m services.timeline`` on this test's topics; killed at the end if still running."""
    started: list[Service] = []

    def start(**env: str) -> Service:
        port, metrics_port = _free_port(), _free_port()
        log = tmp_path / f"timeline-{len(started)}.log"
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.timeline"], cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT,
            env={**os.environ, **registry_env, "MESH_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
                 "MESH_SERVING__PORT": str(port), "MESH_TELEMETRY__METRICS_PORT": str(metrics_port),
                 "MESH_SIMULATIONS": "200", "MESH_ENVIRONMENT": "test", **env})
        service = Service(proc, log, port, metrics_port)
        started.append(service)

        def up() -> bool:
            assert proc.poll() is None, f"timeline exited ({proc.returncode}) at start:\n{service.output()[-3000:]}"
            return _serving(port)

        wait_until(up, "the timeline service to answer SERVING", timeout_s=240)
        return service

    yield start
    for service in started:
        if service.proc.poll() is None:
            service.proc.send_signal(signal.SIGTERM)
            try:
                service.proc.wait(30)
            except subprocess.TimeoutExpired:
                service.proc.kill()


def _created_tasks(n: int, seed: int = 11) -> list[Envelope]:
    from simulator import SimConfig, Simulation

    stream = Simulation(SimConfig(tenants=1, users_per_tenant=20, weeks=2, seed=seed)).events()
    return [ev for ev in stream if ev.type == "task_created"][:n]


def _predicted(messages: list[Message]) -> set[str]:
    return {p.entity_id for p in (decode(m.value).timeline_prediction for m in messages)
            if p.entity_kind == events_pb2.ENTITY_KIND_TASK}


def test_a_consumer_stopped_by_the_dead_letter_cap_takes_the_service_down(settings: MeshSettings,
                                                                          start_timeline: object) -> None:
    service: Service = start_timeline(MESH_BUS__DLQ_MAX_CONSECUTIVE="3")  # type: ignore[operator]
    publisher = KafkaPublisher(settings.kafka, TopicRegistry(settings.kafka.topic_prefix))
    for i in range(6):  # more invalid records in a row than the cap
        publisher.publish_raw("tasks", b"\x08garbage", f"tenant-000:x{i}".encode(), [])
    publisher.flush()
    wait_until(lambda: service.proc.poll() is not None, "the service to exit after its consumer died", 120)
    out = service.output()
    assert service.proc.returncode == 3, out[-3000:]
    assert "DeadLetterCapExceeded" in out and "in a row" in out
    assert "consumer died" in out and "NOT_SERVING" in out
    assert not _serving(service.port)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[object]:
    """A redis-server of this test's own (the shared one stays up for everybody else), AOF on."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port, data = _free_port(), tmp_path / "redis"
    data.mkdir()
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(data)],
                                stdout=(tmp_path / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        procs.append(proc)
        import redis

        wait_until(lambda: redis.Redis(port=port).ping(), "redis-server to answer", 30, ignore=(redis.RedisError,))
        return f"redis://127.0.0.1:{port}/0"

    def stop() -> None:
        procs[-1].send_signal(signal.SIGTERM)
        procs[-1].wait(30)

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_a_redis_outage_holds_the_stream_and_every_task_is_predicted_after(settings: MeshSettings,
                                                                          start_timeline: object,
                                                                          private_redis: object) -> None:
    url = private_redis()  # type: ignore[operator]
    service: Service = start_timeline(MESH_REDIS__URL=url)  # type: ignore[operator]
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, ["tasks", "predictions.timeline", "dlq"])
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

    private_redis.stop()  # type: ignore[attr-defined]
    went_down = time.monotonic()
    for env in during:  # the stream goes on while Redis is away
        publisher.publish(env)
    publisher.flush()
    wait_until(lambda: service.metric("mesh_consumer_backpressure") >= 1, "the consumer to hold the batch", 60)
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - went_down)))  # the rest of the outage (the scenario)
    assert service.proc.poll() is None, "the service died during the outage"
    private_redis()  # type: ignore[operator]

    want = {ev.task_created.task_id for ev in tasks}
    out = drain(settings.kafka, topic, 1000, lambda ms: want <= _predicted(ms), timeout_s=180)
    assert want <= _predicted(out), f"{len(want - _predicted(out))} task(s) never predicted"
    assert drain(settings.kafka, registry.physical("dlq"), 1, timeout_s=5) == []
    assert service.proc.poll() is None and _serving(service.port)
    assert service.metric("mesh_consumer_backpressure_retries_total") >= 1
    wait_until(lambda: service.metric("mesh_consumer_backpressure") == 0, "the hold to be released", 60)
    assert "partitions paused, lag grows" in service.output()
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
    log = tmp_path / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "worker"], cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "MESH_ENVIRONMENT": "test", "MESH_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
             "MESH_REDIS_PREFIX": f"test-gw-{unique}:", "MESH_WEBHOOKS__CONSUMER_GROUP": f"test-gw-{unique}",
             "MESH_TELEMETRY__METRICS_PORT": str(_free_port())})
    try:
        proc.wait(120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the worker kept running after its consumer died:\n{log.read_text()[-3000:]}") from None
    out = log.read_text(errors="replace")
    assert proc.returncode == 3, out[-3000:]
    assert "DeadLetterCapExceeded" in out and "gave up" in out
    publisher.close()
