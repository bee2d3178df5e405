from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mesh.config import MeshSettings
from mesh.errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from mesh.serving import INTERNAL_MESSAGE, MeshServer, ServiceBinding, build_server, channel, serve

SERVICE = "test.Probe"
SECRET = "db password is hunter2"

ERRORS: dict[bytes, Exception] = {
    b"not_found": NotFound("no task t-1"),
    b"invalid": InvalidArgument("top_k must be positive"),
    b"denied": PermissionDenied("tenant mismatch"),
    b"unavailable": Unavailable("feature store down"),
    b"boom": RuntimeError(SECRET),
}


@dataclass
class Probe:
    """A servicer without a .proto: raw-bytes methods behind a generic handler."""

    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def raise_(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        if request in ERRORS:
            raise ERRORS[request]
        return b"ok:" + request

    async def stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        yield b"first"
        raise ERRORS[request]

    async def slow(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.entered.set()
        await self.release.wait()
        return b"done"

    def binding(self) -> ServiceBinding:
        handler = grpc.method_handlers_generic_handler(SERVICE, {
            "Raise": grpc.unary_unary_rpc_method_handler(self.raise_),
            "Stream": grpc.unary_stream_rpc_method_handler(self.stream),
            "Slow": grpc.unary_unary_rpc_method_handler(self.slow),
        })
        return ServiceBinding(SERVICE, lambda server: server.add_generic_rpc_handlers((handler,)))


@dataclass
class Running:
    server: MeshServer
    channel: grpc.aio.Channel
    spans: InMemorySpanExporter
    probe: Probe


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    probe = Probe()
    server = build_server([probe.binding()], MeshSettings(), 0, host="127.0.0.1", tracer_provider=provider)
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        yield Running(server, chan, spans, probe)
    await server.stop(0)


@pytest.mark.parametrize(("request_bytes", "code", "message"), [
    (b"not_found", grpc.StatusCode.NOT_FOUND, "no task t-1"),
    (b"invalid", grpc.StatusCode.INVALID_ARGUMENT, "top_k must be positive"),
    (b"denied", grpc.StatusCode.PERMISSION_DENIED, "tenant mismatch"),
    (b"unavailable", grpc.StatusCode.UNAVAILABLE, "feature store down"),
    (b"boom", grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE),
])
async def test_domain_errors_map_to_status_codes(running: Running, request_bytes: bytes,
                                                 code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.channel.unary_unary(f"/{SERVICE}/Raise")(request_bytes, timeout=5)
    assert caught.value.code() == code
    assert caught.value.details() == message


async def test_unexpected_errors_do_not_leak_but_are_logged(running: Running,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="mesh.serving"), pytest.raises(grpc.aio.AioRpcError) as caught:
        await running.channel.unary_unary(f"/{SERVICE}/Raise")(b"boom", timeout=5)
    assert SECRET not in (caught.value.details() or "")
    assert SECRET not in str(caught.value.debug_error_string())
    assert SECRET in caplog.text and "Traceback" in caplog.text


async def test_success_passes_through(running: Running) -> None:
    assert await running.channel.unary_unary(f"/{SERVICE}/Raise")(b"x", timeout=5) == b"ok:x"


async def test_streaming_errors_are_mapped_after_the_items_sent(running: Running) -> None:
    call = running.channel.unary_stream(f"/{SERVICE}/Stream")(b"not_found", timeout=5)
    received = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for item in call:
            received.append(item)
    assert received == [b"first"]
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_reports_serving_and_not_serving(running: Running) -> None:
    stub = health_pb2_grpc.HealthStub(running.channel)
    for service in ("", SERVICE):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    await running.server.set_serving(False)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=5)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_lists_the_services(running: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(running.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async for reply in stub.ServerReflectionInfo(iter([request]), timeout=5):
        names = {s.name for s in reply.list_services_response.service}
        break
    assert {SERVICE, "grpc.health.v1.Health"} <= names


async def test_server_spans_record_the_mapped_status(running: Running) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await running.channel.unary_unary(f"/{SERVICE}/Raise")(b"not_found", timeout=5)
    spans = [s for s in running.spans.get_finished_spans() if s.name == f"/{SERVICE}/Raise"]
    assert spans and spans[-1].attributes is not None
    assert spans[-1].attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]


async def test_sigterm_stops_gracefully_letting_in_flight_calls_finish() -> None:
    probe = Probe()
    started: list[MeshServer] = []
    task = asyncio.create_task(serve([probe.binding()], MeshSettings(), 0, grace_s=5.0, on_started=started.append))
    for _ in range(500):  # bounded wait for the server to be up
        if started:
            break
        await asyncio.sleep(0.01)
    assert started, "server did not start"
    server = started[0]
    async with channel(f"127.0.0.1:{server.port}") as chan:
        in_flight = asyncio.ensure_future(chan.unary_unary(f"/{SERVICE}/Slow")(b"", timeout=10))
        await asyncio.wait_for(probe.entered.wait(), 5)
        os.kill(os.getpid(), signal.SIGTERM)
        request = health_pb2.HealthCheckRequest(service=SERVICE)
        for _ in range(500):  # health flips to NOT_SERVING first
            if (await server.health.Check(request, None)).status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.01)
        assert (await server.health.Check(request, None)).status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert not task.done()  # still within the grace period, waiting for the call
        probe.release.set()
        assert await in_flight == b"done"
        await asyncio.wait_for(task, 10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await chan.unary_unary(f"/{SERVICE}/Raise")(b"x", timeout=2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
