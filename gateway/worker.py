"""The webhook delivery worker: the Kafka consumer (in a thread, restarted when it fails) and the async
dispatcher.

Outages do not kill the consumer (the runner holds the batch and retries). What does is fatal: a consumer
stopped by the dead-letter cap gives up at once (a restart would drain the next records into the DLQ), any
other failure is restarted with backoff a bounded number of times, then the worker gives up ("failed") and
``python -m gateway worker`` exits non-zero so that the orchestrator restarts it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Literal, Protocol

from gateway.metrics import WEBHOOK_CONSUMER_RESTARTS, WEBHOOK_CONSUMER_UP
from gateway.settings import GatewaySettings
from gateway.webhooks.consumer import DeliveryEnqueuer, build_runner
from gateway.webhooks.dispatcher import Dispatcher
from gateway.webhooks.store import WebhookStore
from mesh.bus import DeadLetterCapExceeded, RetryPolicy, ensure_topics
from mesh.events import TopicRegistry

log = logging.getLogger(__name__)

ConsumerState = Literal["starting", "running", "restarting", "failed", "stopped"]
"""failed: it kept failing and the worker gave up (the process needs a restart; /readyz says 503)."""


class Runner(Protocol):
    """What the worker needs of :class:`mesh.bus.ConsumerRunner` (tests pass fakes)."""

    def run(self) -> object: ...

    def stop(self) -> None: ...


OpenRunner = Callable[[DeliveryEnqueuer], Runner]
"""Builds a consumer around the handler; called on the consumer's thread (it may block on Kafka)."""


def kafka_runner(settings: GatewaySettings) -> OpenRunner:
    def open_runner(enqueuer: DeliveryEnqueuer) -> Runner:
        topics = settings.webhooks.topics
        ensure_topics(settings.kafka, TopicRegistry(settings.kafka.topic_prefix), [*topics, "dlq"])
        return build_runner(settings.kafka, settings.webhooks.consumer_group, topics, enqueuer)

    return open_runner


class DeliveryWorker:
    """Started and stopped with the app (or alone by ``python -m gateway worker``)."""

    def __init__(self, settings: GatewaySettings, store: WebhookStore, clock: Callable[[], float],
                 open_runner: OpenRunner | None = None) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._open_runner = open_runner or kafka_runner(settings)
        self._stop = asyncio.Event()
        self._runner: Runner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._state: ConsumerState = "starting"
        self.failed = asyncio.Event()
        """Set when the consumer gave up: the process should exit non-zero."""
        self._last_run_s = 0.0
        hooks = settings.webhooks
        self._restart = RetryPolicy(max_attempts=hooks.consumer_max_restarts + 1,
                                    initial_backoff_s=hooks.consumer_restart_backoff_s,
                                    max_backoff_s=hooks.consumer_restart_max_backoff_s)

    @property
    def consumer_state(self) -> ConsumerState:
        return self._state

    async def start(self) -> None:
        settings = self._settings
        client = Dispatcher.make_client(settings.webhooks)
        dispatcher = Dispatcher(self._store, settings.webhooks, client, self._clock)
        self._tasks.append(asyncio.create_task(self._dispatch(dispatcher), name="webhook-dispatcher"))
        self._tasks.append(asyncio.create_task(self.run_consumer(), name="webhook-consumer"))

    async def _dispatch(self, dispatcher: Dispatcher) -> None:
        try:
            await dispatcher.run(self._stop)
        finally:
            await dispatcher._client.aclose()

    async def run_consumer(self) -> None:
        """Run the consumer; when it fails, restart it with backoff, at most ``consumer_max_restarts`` in a row."""
        enqueuer = DeliveryEnqueuer(self._store, asyncio.get_running_loop())
        failures = 0
        while not self._stop.is_set():
            try:
                ran_s = await self._run_once(enqueuer)
            except DeadLetterCapExceeded:
                log.exception("webhook consumer stopped by the dead-letter cap; giving up (not restarted: that "
                              "would drain the next records into the DLQ too)")
                self._set_state("failed")
                return
            except Exception:
                # A consumer that ran for a while before failing starts a fresh series of restarts.
                failures = 1 if self._ran_long(self._last_run_s) else failures + 1
                if not await self._back_off(failures):
                    return
                continue
            log.info("webhook consumer stopped after %.1f s", ran_s)
            break
        self._set_state("stopped")

    async def _run_once(self, enqueuer: DeliveryEnqueuer) -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._last_run_s = 0.0

        def blocking() -> None:
            self._runner = self._open_runner(enqueuer)
            if self._stop.is_set():
                return
            self._set_state("running")
            self._runner.run()

        try:
            await asyncio.to_thread(blocking)
        finally:
            self._last_run_s = loop.time() - started
        return self._last_run_s

    def _ran_long(self, ran_s: float) -> bool:
        return ran_s >= self._settings.webhooks.consumer_healthy_after_s

    async def _back_off(self, failures: int) -> bool:
        """Wait before the next restart; False when out of restarts (or stopping)."""
        if failures >= self._restart.max_attempts:
            log.exception("webhook consumer failed %d times in a row; giving up (webhooks stay undelivered "
                          "until the process restarts)", failures)
            self._set_state("failed")
            return False
        delay = self._restart.backoff_s(failures)
        log.exception("webhook consumer failed (%d in a row); restarting in %.1f s", failures, delay)
        self._set_state("restarting")
        WEBHOOK_CONSUMER_RESTARTS.inc()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        return not self._stop.is_set()

    def _set_state(self, state: ConsumerState) -> None:
        self._state = state
        if state == "failed":
            self.failed.set()
        WEBHOOK_CONSUMER_UP.set(1 if state == "running" else 0)

    async def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            self._runner.stop()
        for task in self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, timeout=30)
