"""gRPC asyncio server bootstrap: health, reflection, error mapping, OpenTelemetry, graceful stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.trace import TracerProvider

from mesh.config import MeshSettings
from mesh.serving._interceptor import ErrorMappingInterceptor

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 10.0


@dataclass(frozen=True)
class ServiceBinding:
    """One gRPC service to serve."""

    name: str
    """Full proto service name (``sunday.ml.v1.Assignment``): reported by health and reflection."""
    add_to_server: Callable[[grpc.aio.Server], None]
    """Registers the servicer, e.g. ``lambda s: add_AssignmentServicer_to_server(servicer, s)``."""


def bind(name: str, adder: Callable[[Any, grpc.aio.Server], None], servicer: object) -> ServiceBinding:
    """A binding from a generated ``add_XServicer_to_server`` function and a servicer."""
    return ServiceBinding(name, lambda server: adder(servicer, server))


class MeshServer:
    """A built (not yet started) server and its health servicer."""

    def __init__(self, server: grpc.aio.Server, port: int, health_servicer: health.aio.HealthServicer,
                 service_names: Sequence[str], grace_s: float) -> None:
        self.server = server
        self.port = port
        """The bound port (the real one when 0 was asked for)."""
        self.health = health_servicer
        self.service_names = tuple(service_names)
        self.grace_s = grace_s

    async def start(self) -> None:
        await self.server.start()
        await self.set_serving(True)
        log.info("gRPC server on port %d serving %s", self.port, ", ".join(self.service_names))

    async def set_serving(self, serving: bool) -> None:
        """Health of the whole server ("") and of each service."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *self.service_names):
            await self.health.set(name, status)

    async def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING first (balancers stop sending), then let in-flight calls finish within the grace."""
        grace = self.grace_s if grace_s is None else grace_s
        await self.health.enter_graceful_shutdown()
        log.info("gRPC server on port %d stopping (grace %.1f s)", self.port, grace)
        await self.server.stop(grace)


def build_server(
    bindings: Sequence[ServiceBinding],
    settings: MeshSettings,
    port: int,
    *,
    host: str = "[::]",
    grace_s: float = DEFAULT_GRACE_S,
    tracer_provider: TracerProvider | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> MeshServer:
    """A server with the services, health (grpc.health.v1), reflection, OTel spans and the error
    interceptor. ``port`` 0 picks a free port (see :attr:`MeshServer.port`)."""
    # OTel outermost: its span sees the status the error interceptor sets
    otel = aio_server_interceptor(tracer_provider=tracer_provider)  # type: ignore[no-untyped-call]
    interceptors = [otel, ErrorMappingInterceptor()]
    server = grpc.aio.server(interceptors=interceptors, options=list(options))
    for binding in bindings:
        binding.add_to_server(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = [b.name for b in bindings]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    bound = server.add_insecure_port(f"{host}:{port}")
    log.info("built gRPC server for %s (%s)", settings.telemetry.service_name, settings.environment)
    return MeshServer(server, bound, health_servicer, names, grace_s)


async def serve(
    bindings: Sequence[ServiceBinding],
    settings: MeshSettings,
    port: int,
    *,
    host: str = "[::]",
    grace_s: float = DEFAULT_GRACE_S,
    stop: asyncio.Event | None = None,
    on_started: Callable[[MeshServer], None] | None = None,
    tracer_provider: TracerProvider | None = None,
) -> None:
    """Build, start, and run until SIGTERM/SIGINT (or ``stop`` is set); then stop gracefully."""
    server = build_server(bindings, settings, port, host=host, grace_s=grace_s, tracer_provider=tracer_provider)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if on_started is not None:
            on_started(server)
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        await server.stop()
