"""The delivery worker's Kafka side: output topics -> one delivery per matching subscription.

It runs the shared :class:`mesh.bus.ConsumerRunner` (decode, dedupe, retries, DLQ, commit last) in a
thread; its handler hands each envelope to the async store on the gateway's event loop and waits, so
the offset is committed only after the deliveries are stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import TimeoutError as FutureTimeout

from google.protobuf import json_format
from redis.exceptions import RedisError

from gateway.webhooks.store import WebhookStore
from mesh.bus import ConsumerRunner, KafkaConsumerTransport, KafkaPublisher, RunnerOptions, TransientError
from mesh.config import KafkaSettings
from mesh.events import Envelope, TopicRegistry
from mesh.telemetry import inject_headers

log = logging.getLogger(__name__)


def event_body(env: Envelope) -> bytes:
    """The JSON a subscriber receives: the envelope, protobuf field names kept."""
    return json.dumps(json_format.MessageToDict(env, preserving_proto_field_name=True), sort_keys=True).encode()


def _traceparent() -> str:
    return dict((k, v.decode()) for k, v in inject_headers([])).get("traceparent", "")


class DeliveryEnqueuer:
    """The runner's handler (called on the runner's thread)."""

    def __init__(self, store: WebhookStore, loop: asyncio.AbstractEventLoop, timeout_s: float = 10.0) -> None:
        self._store = store
        self._loop = loop
        self._timeout_s = timeout_s

    def __call__(self, env: Envelope) -> None:
        coro = self._store.enqueue(env.tenant_id, env.event_id, env.type, event_body(env), _traceparent())
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            created = future.result(self._timeout_s)
        except (RedisError, FutureTimeout) as exc:
            future.cancel()
            raise TransientError(f"storing deliveries failed: {exc}") from exc
        if created:
            log.debug("event %s (%s): %d deliveries", env.event_id, env.type, len(created))


def build_runner(kafka: KafkaSettings, group_id: str, topics: list[str], handler: DeliveryEnqueuer,
                 options: RunnerOptions | None = None) -> ConsumerRunner:
    registry = TopicRegistry(kafka.topic_prefix)
    return ConsumerRunner(consumer=KafkaConsumerTransport(kafka, group_id), publisher=KafkaPublisher(kafka, registry),
                          topics=topics, group_id=group_id, handler=handler, options=options)
