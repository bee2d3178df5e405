"""Real services as processes, for tests that kill them: champions in a temporary MLflow registry, a
private Redis and a private Kafka broker (the shared stack is never touched), and ``python -m services.X``
started, health-checked, SIGKILLed and restarted with their output collected.

    registry = register_champions(tmp / "mlflow", ("assignment",))
    with PrivateRedis(tmp / "redis") as redis_, PrivateBroker(tmp / "kafka") as broker:
        env = service_env(registry, redis_.url, broker.bootstrap, topic_prefix="t-abc.")
        with ServiceProcess("assignment", env, tmp / "logs") as svc:
            svc.start(); svc.wait_serving()
            svc.kill(); svc.start(); svc.wait_serving()

Everything started here is stopped by its own pid, with bounded waits.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from mesh.config import ModelSettings
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[1]
STACK_SH = REPO / "deploy" / "local" / "stack.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class Registry:
    """A temporary MLflow registry (sqlite + file artifacts) holding the services' champions."""

    tracking_uri: str
    artifact_dir: Path

    def settings(self) -> ModelSettings:
        return ModelSettings(tracking_uri=self.tracking_uri, artifact_dir=self.artifact_dir,
                             reload_interval_s=1.0)  # type: ignore[call-arg]

    def env(self) -> dict[str, str]:
        return {"MESH_MODELS__TRACKING_URI": self.tracking_uri, "MESH_MODELS__ARTIFACT_DIR": str(self.artifact_dir)}


def register_champions(root: Path, services: Sequence[str] = ("assignment", "timeline")) -> Registry:
    """Train small models (seconds) and register each as its service's ``champion``."""
    from mesh.models import CHAMPION, ModelRegistry

    root.mkdir(parents=True, exist_ok=True)
    registry = Registry(f"sqlite:///{root / 'mlflow.db'}", root / "artifacts")
    models = ModelRegistry(registry.settings())
    span = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC) + timedelta(weeks=4))
    for name, path in _trained(root, services):
        models.log_and_register(name, path, {}, {"purpose": "tests"}, span, alias=CHAMPION)
    return registry


def _trained(root: Path, services: Sequence[str]) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    if "assignment" in services:
        from services.assignment.ranker import MODEL_NAME as ASSIGNMENT
        from tests.unit.assignment.helpers import tiny_model

        out.append((ASSIGNMENT, tiny_model(root / "assignment")))
    if "timeline" in services:
        from services.timeline.export import export_untrained
        from services.timeline.predictor import MODEL_NAME as TIMELINE

        out.append((TIMELINE, export_untrained(root / "timeline")))
    if "nlp" in services:
        from services.nlp.embedder import MODEL_NAME as EMBEDDER
        from services.nlp.text import MODEL_NAME as SENTIMENT
        from tests.unit.nlp.helpers import exported_embedder
        from tests.unit.nlp.test_textwire import sentiment_model

        out += [(EMBEDDER, exported_embedder()), (SENTIMENT, sentiment_model().current.model.path)]
    return out


# ------------------------------------------------------------------------------------------ stack
class PrivateRedis:
    """redis-server on a free port with AOF persistence in ``root``: :meth:`stop` keeps the data (a
    restart reloads it), :meth:`kill` + :meth:`wipe` lose it (a restart without persistence)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.root),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always", "--logfile", str(self.root / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._ping, f"redis on port {self.port}", 30, ignore=(Exception,))

    def _ping(self) -> bool:
        import redis

        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis writes its AOF and exits."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def wipe(self) -> None:
        """Forget the data on disk (call while stopped): the next start is empty."""
        for path in sorted(self.root.rglob("*"), reverse=True):
            if path.name != "log":
                path.unlink() if path.is_file() else path.rmdir()

    def _end(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(sig)
            self._proc.wait(30)
        self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class PrivateBroker:
    """A private single-node Kafka broker from ``deploy/local/stack.sh`` (own ports and folder; only the
    broker: ``MESH_STACK_COMPONENTS=kafka``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self._env = {**os.environ, "MESH_KAFKA_PORT": str(self.port), "MESH_KAFKA_CONTROLLER_PORT": str(free_port()),
                     "MESH_REDIS_PORT": str(free_port()), "MESH_STACK_DIR": str(root),
                     "MESH_STACK_COMPONENTS": "kafka",
                     "MESH_KAFKA_HEAP": "-Xms128m -Xmx384m"}

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _stack(self, command: str) -> None:
        subprocess.run(["bash", str(STACK_SH), command], env=self._env, check=True, timeout=180,
                       stdout=subprocess.DEVNULL)

    def start(self) -> None:
        self._stack("start")

    def restart_kafka(self) -> None:
        """Stop the broker (SIGTERM, by its pid file) and start it again on the same data."""
        pid_file = self.root / "pids" / "kafka.pid"
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not _alive(pid), "the broker to stop", 60)
        pid_file.unlink(missing_ok=True)
        self._stack("start")

    def stop(self) -> None:
        self._stack("stop")

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# ------------------------------------------------------------------------------------------ services
def service_env(registry: Registry, redis_url: str, bootstrap: str, topic_prefix: str, offline_dir: Path,
                **extra: str) -> dict[str, str]:
    """The environment of a service process pointed at the given stack, topics and registry."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MESH_")}
    env.update({"MESH_ENVIRONMENT": "test", "MESH_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
                "MESH_KAFKA__TOPIC_PREFIX": topic_prefix, "MESH_KAFKA__CONNECT_TIMEOUT_S": "20",
                "MESH_REDIS__URL": redis_url, "MESH_FEATURES__OFFLINE_DIR": str(offline_dir),
                "MESH_FEATURES__REPO_DIR": str(offline_dir / "feast"), "MLFLOW_DISABLE_TELEMETRY": "true",
                "ORT_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PYTHONUNBUFFERED": "1", **registry.env(), **extra})
    return env


class ServiceProcess:
    """``python -m services.<name>`` on its own gRPC port; every start appends to one log file."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.env = {**env, "MESH_SERVING__PORT": str(self.port), "MESH_TELEMETRY__SERVICE_NAME": name}
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.starts = 0
        self.kills = 0
        self.exits: list[int] = []
        """Exit codes of the runs that ended by themselves (not killed by us)."""
        self.closed = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def close(self) -> None:
        """Stop for good (SIGTERM, then SIGKILL): later :meth:`start` calls refuse."""
        self.closed = True
        self.terminate(20)

    def start(self) -> None:
        if self.closed:
            raise RuntimeError(f"{self.name} was closed")
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self._log = self.log_path.open("ab")
        self._log.write(f"\n===== start {self.starts + 1} at {datetime.now(UTC).isoformat()} =====\n".encode())
        self._log.flush()
        self._proc = subprocess.Popen([sys.executable, "-m", f"services.{self.name}"], cwd=REPO, env=self.env,
                                      stdout=self._log, stderr=subprocess.STDOUT)
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def serving(self) -> bool:
        """The process runs and its gRPC health check answers SERVING."""
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        if not self.alive():
            return False
        with grpc.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def wait_serving(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._serving_quietly():
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode if self._proc else None} "
                                   f"before serving; log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} not SERVING after {timeout_s:.0f}s; log tail:\n{self.log_tail()}")
            time.sleep(0.2)

    def _serving_quietly(self) -> bool:
        try:
            return self.serving()
        except Exception:
            return False

    def reap(self) -> int | None:
        """If the process ended by itself, record its exit code and return it (None while it runs)."""
        if self._proc is None or self._proc.poll() is None:
            return None
        code = int(self._proc.returncode)
        self.exits.append(code)
        self.close_hour()
        return code

    def kill(self) -> None:
        """SIGKILL, no warning: the crash the exactly-once guarantees are about."""
        if self.alive():
            assert self._proc is not None
            self._proc.kill()
            self._proc.wait(30)
            self.kills += 1
        self.close_hour()

    def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait (SIGKILL past the timeout); returns the exit code."""
        if not self.alive():
            self.close_hour()
            return None
        assert self._proc is not None
        self._proc.terminate()
        try:
            code: int | None = self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            code = self._proc.wait(30)
        self.close_hour()
        return code

    def close_hour(self) -> None:
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
