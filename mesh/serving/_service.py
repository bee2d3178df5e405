"""The shape every capability service runs in: its Kafka consumer on a thread, its gRPC server on the
event loop; SIGTERM stops the server gracefully, then the consumer finishes its batch and commits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Protocol

from mesh.config import MeshSettings
from mesh.serving._server import ServiceBinding, serve


class Runner(Protocol):
    """What :class:`mesh.bus.ConsumerRunner` offers (kept structural: serving does not import the bus)."""

    def run(self) -> object: ...

    def stop(self) -> None: ...


async def run_service(name: str, runner: Runner, bindings: Sequence[ServiceBinding], settings: MeshSettings,
                      *, stop: asyncio.Event | None = None) -> None:
    """Consume and serve until SIGTERM/SIGINT (or ``stop``); on the way out the consumer commits what it handled."""
    consumer = threading.Thread(target=runner.run, name=f"{name}-consumer", daemon=True)
    consumer.start()
    try:
        await serve(bindings, settings, settings.serving.port, host=settings.serving.host,
                    grace_s=settings.serving.grace_s, stop=stop)
    finally:
        runner.stop()
        await asyncio.to_thread(consumer.join)
