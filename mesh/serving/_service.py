"""The shape every capability service runs in: its Kafka consumer on a thread, its gRPC server on the
event loop; SIGTERM stops the server gracefully, then the consumer finishes its batch and commits.

A consumer that dies (an exception such as ``DeadLetterCapExceeded``, or a return nobody asked for) is a
dead service: health goes NOT_SERVING, the server drains, and :func:`run_service` raises
:class:`ConsumerDied`, which the service's ``main`` turns into exit code :attr:`ConsumerDied.exit_code`
so that the orchestrator restarts the process (a service that answers SERVING but consumes nothing lets
its lag grow with no alert)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from mesh.config import MeshSettings
from mesh.serving._gc import tune_gc
from mesh.serving._server import ServiceBinding, serve

log = logging.getLogger(__name__)

S = TypeVar("S", bound=MeshSettings)


class Runner(Protocol):
    """What :class:`mesh.bus.ConsumerRunner` offers (kept structural: serving does not import the bus)."""

    def run(self) -> object: ...

    def stop(self) -> None: ...


class ConsumerDied(RuntimeError):
    """The service's consumer stopped without being asked to; the process must exit non-zero."""

    exit_code: ClassVar[int] = 3
    """What a service's ``main`` exits with (distinct from 1, an error at start-up)."""


async def run_service(name: str, runner: Runner, bindings: Sequence[ServiceBinding], settings: MeshSettings,
                      *, stop: asyncio.Event | None = None) -> None:
    """Consume and serve until SIGTERM/SIGINT (or ``stop``); on the way out the consumer commits what it handled.

    Raises :class:`ConsumerDied` (after the server drained) when the consumer raised or returned by itself."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    stopping = threading.Event()  # set before we ask the runner to stop: its return is then expected
    death: list[ConsumerDied] = []

    def consume() -> None:
        try:
            runner.run()
        except BaseException as exc:  # whatever killed it, the service goes down with it
            error = ConsumerDied(f"the {name} consumer died: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            log.critical("the %s consumer died; health NOT_SERVING, draining the gRPC server, exiting", name,
                         exc_info=exc)
        else:
            if stopping.is_set():
                return
            error = ConsumerDied(f"the {name} consumer returned without being asked to stop")
            log.critical("%s; health NOT_SERVING, draining the gRPC server, exiting", error)
        death.append(error)
        loop.call_soon_threadsafe(stop.set)

    tune_gc()  # everything the service serves with is loaded by now: freeze it (mesh.serving._gc)
    consumer = threading.Thread(target=consume, name=f"{name}-consumer", daemon=True)
    consumer.start()
    try:
        # stop set by a signal, the caller, or died(): serve() sets NOT_SERVING and drains within the grace.
        await serve(bindings, settings, settings.serving.port, host=settings.serving.host,
                    grace_s=settings.serving.grace_s, stop=stop)
    finally:
        stopping.set()
        runner.stop()
        await asyncio.to_thread(consumer.join)
    if death:
        raise death[0]


def service_main(name: str, settings_type: type[S], run: Callable[[S], Coroutine[Any, Any, None]]) -> None:
    """A service's ``main``: logging, settings from the environment (named ``name`` in traces and metrics),
    ``asyncio.run(run(settings))``, and exit :attr:`ConsumerDied.exit_code` when the consumer died."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings_type()  # type: ignore[call-arg]  # pydantic-settings reads the environment
    settings.telemetry.service_name = name
    try:
        asyncio.run(run(settings))
    except ConsumerDied as exc:  # logged where it died; exit non-zero so the orchestrator restarts us
        raise SystemExit(exc.exit_code) from exc
