"""run_service: the consumer runs beside the gRPC server and is stopped and joined when serving ends."""

from __future__ import annotations

import asyncio
import threading

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.config import MeshSettings
from mesh.serving import channel, run_service


class FakeRunner:
    def __init__(self) -> None:
        self.started = threading.Event()
        self._stop = threading.Event()
        self.finished = False

    def run(self) -> None:
        self.started.set()
        self._stop.wait(30)
        self.finished = True  # the batch in flight is committed before run() returns

    def stop(self) -> None:
        self._stop.set()


async def test_consumer_runs_while_serving_and_is_joined_on_stop() -> None:
    settings = MeshSettings()
    settings.serving.port = 0
    runner, stop = FakeRunner(), asyncio.Event()
    task = asyncio.create_task(run_service("fake", runner, [], settings, stop=stop))
    assert await asyncio.to_thread(runner.started.wait, 10)
    assert not runner.finished
    stop.set()
    await asyncio.wait_for(task, 30)
    assert runner.finished


async def test_health_answers_while_the_service_runs() -> None:
    settings = MeshSettings()
    settings.serving.port = 0
    settings.serving.host = "127.0.0.1"
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        settings.serving.port = s.getsockname()[1]
    runner, stop = FakeRunner(), asyncio.Event()
    task = asyncio.create_task(run_service("fake", runner, [], settings, stop=stop))
    try:
        async with channel(f"127.0.0.1:{settings.serving.port}") as ch:
            reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=10,
                                                               wait_for_ready=True)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


class DyingRunner:
    """Consumes for a moment, then dies the way a real consumer can (or returns by itself)."""

    def __init__(self, error: BaseException | None) -> None:
        self.go = threading.Event()
        self._error = error
        self.stopped = False

    def run(self) -> None:
        self.go.wait(30)
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        self.stopped = True
        self.go.set()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_dead_consumer_turns_health_not_serving_and_raises_consumer_died() -> None:
    from mesh.bus import DeadLetterCapExceeded
    from mesh.serving import ConsumerDied

    settings = MeshSettings()
    settings.serving.host, settings.serving.port, settings.serving.grace_s = "127.0.0.1", _free_port(), 2.0
    runner = DyingRunner(DeadLetterCapExceeded("101 invalid messages in a row on tasks (cap 100)"))
    task = asyncio.create_task(run_service("fake", runner, [], settings))
    statuses: list[int] = []
    async with channel(f"127.0.0.1:{settings.serving.port}") as ch:
        watch = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), wait_for_ready=True, timeout=20)
        async for reply in watch:
            statuses.append(reply.status)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                runner.go.set()  # the consumer dies while the service serves
            if reply.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
    assert statuses[0] == health_pb2.HealthCheckResponse.SERVING
    assert statuses[-1] == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(ConsumerDied, match=r"DeadLetterCapExceeded: .*cap 100") as died:
        await asyncio.wait_for(task, 30)
    assert isinstance(died.value.__cause__, DeadLetterCapExceeded) and runner.stopped
    assert ConsumerDied.exit_code != 0


async def test_a_consumer_that_returns_by_itself_is_a_dead_consumer() -> None:
    from mesh.serving import ConsumerDied

    settings = MeshSettings()
    settings.serving.host, settings.serving.port, settings.serving.grace_s = "127.0.0.1", 0, 0.5
    runner = DyingRunner(None)
    runner.go.set()
    with pytest.raises(ConsumerDied, match="returned without being asked to stop"):
        await asyncio.wait_for(run_service("fake", runner, [], settings), 30)
