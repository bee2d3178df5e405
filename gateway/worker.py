"""The webhook delivery worker: the Kafka consumer (in a thread) and the async dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from gateway.settings import GatewaySettings
from gateway.webhooks.consumer import DeliveryEnqueuer, build_runner
from gateway.webhooks.dispatcher import Dispatcher
from gateway.webhooks.store import WebhookStore
from mesh.bus import ConsumerRunner, ensure_topics
from mesh.events import TopicRegistry

log = logging.getLogger(__name__)


class DeliveryWorker:
    """Started and stopped with the app (or alone by ``python -m gateway worker``)."""

    def __init__(self, settings: GatewaySettings, store: WebhookStore, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._stop = asyncio.Event()
        self._runner: ConsumerRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        settings = self._settings
        client = Dispatcher.make_client(settings.webhooks)
        dispatcher = Dispatcher(self._store, settings.webhooks, client, self._clock)
        self._tasks.append(asyncio.create_task(self._dispatch(dispatcher), name="webhook-dispatcher"))
        self._tasks.append(asyncio.create_task(self._consume(), name="webhook-consumer"))

    async def _dispatch(self, dispatcher: Dispatcher) -> None:
        try:
            await dispatcher.run(self._stop)
        finally:
            await dispatcher._client.aclose()

    async def _consume(self) -> None:
        settings = self._settings
        topics = settings.webhooks.topics
        enqueuer = DeliveryEnqueuer(self._store, asyncio.get_running_loop())

        def blocking() -> None:
            ensure_topics(settings.kafka, TopicRegistry(settings.kafka.topic_prefix), [*topics, "dlq"])
            self._runner = build_runner(settings.kafka, settings.webhooks.consumer_group, topics, enqueuer)
            if self._stop.is_set():
                return
            stats = self._runner.run()
            log.info("webhook consumer stopped: %s", stats)

        try:
            await asyncio.to_thread(blocking)
        except Exception:
            log.exception("webhook consumer failed; webhooks stay undelivered until the worker restarts")
            raise

    async def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            self._runner.stop()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
