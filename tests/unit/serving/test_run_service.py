"""run_service: the consumer runs beside the gRPC server and is stopped and joined when serving ends."""

from __future__ import annotations

import asyncio
import threading

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
