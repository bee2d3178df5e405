"""Publishing envelopes: topic from the registry, key per entity, trace context in headers.

A :class:`Publisher` may be flushed from one thread while another publishes (the consumer runner settles
batch N in the background while it handles batch N+1): a flush covers exactly what was queued before it
began. Records published while it runs are held back in the publisher and queued when it ends, so a
delivery failure is always reported by the flush that covers the failed record, never by a later publish
or a flush made for other records.
"""

from __future__ import annotations

import contextlib
import threading

from opentelemetry import trace
from opentelemetry.trace import SpanKind

from mesh.bus._kafka import KafkaProducerTransport
from mesh.bus._transport import Header, ProducerTransport
from mesh.config import KafkaSettings
from mesh.events import CONTENT_TYPE, Envelope, TopicRegistry, encode, partition_key
from mesh.telemetry import EVENTS_PUBLISHED, inject_headers
from mesh.telemetry import names as n


class Publisher:
    """Publishes envelopes to the topic their type is declared on."""

    def __init__(self, transport: ProducerTransport, registry: TopicRegistry) -> None:
        self._transport = transport
        self.registry = registry
        self._tracer = trace.get_tracer("mesh.bus")
        self._lock = threading.Condition()
        self._flushing = False
        self._held: list[tuple[str, bytes, bytes | None, list[Header]]] = []
        self._failed: Exception | None = None

    def publish(self, env: Envelope) -> None:
        """Encode (validating) and queue the envelope; :meth:`flush` waits for delivery."""
        topic = self.registry.physical(self.registry.for_event(env.type).logical)
        with self._tracer.start_as_current_span(
            n.SPAN_PUBLISH, kind=SpanKind.PRODUCER,
            attributes={"messaging.destination.name": topic, "messaging.message.id": env.event_id,
                        "sunday.event_type": env.type, "sunday.tenant_id": env.tenant_id},
        ):
            headers: list[Header] = [
                (n.HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()),
                (n.HEADER_TENANT, env.tenant_id.encode()),
                (n.HEADER_EVENT_TYPE, env.type.encode()),
                (n.HEADER_EVENT_ID, env.event_id.encode()),
            ]
            self._produce(topic, encode(env), partition_key(env), inject_headers(headers))
        EVENTS_PUBLISHED.labels(topic).inc()

    def publish_raw(self, logical_topic: str, value: bytes, key: bytes | None, headers: list[Header]) -> None:
        """Queue bytes as they are (the dead-letter path, which must not re-validate)."""
        self._produce(self.registry.physical(logical_topic), value, key, headers)

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers: list[Header]) -> None:
        with self._lock:
            if self._flushing:  # another thread's flush is running: queued when it ends (see the module doc)
                self._held.append((topic, value, key, headers))
                return
            self._release()  # what a flush held comes first (order per key)
            self._transport.produce(topic, value, key, headers)

    def _release(self) -> None:
        """Queue the held records in order (lock held); those not queued stay held, and the failure is
        reported by the next flush (it covers them)."""
        while self._held:
            try:
                self._transport.produce(*self._held[0])
            except Exception as exc:
                self._failed = exc
                raise
            self._held.pop(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything queued before this call is delivered; raise PublishError otherwise.

        Thread-safe: a flush that finds another one running waits for it first; records published during a
        flush are queued when it ends (delivered by the next flush)."""
        from mesh.bus._errors import PublishError

        with self._lock:
            while self._flushing:
                self._lock.wait()
            failed, self._failed = self._failed, None
            self._release()
            self._flushing = True
        try:
            remaining = self._transport.flush(timeout_s)
        finally:
            with self._lock:
                self._flushing = False
                self._lock.notify_all()
                with contextlib.suppress(Exception):  # kept in _failed: the next flush (it covers them) raises
                    self._release()
        if failed is not None:
            raise PublishError(f"records queued after an earlier flush failed to queue ({failed})", retryable=True)
        if remaining:
            # A timeout, not a rejection: the broker is slow or away (the runner holds the batch and retries).
            raise PublishError(f"{remaining} record(s) still undelivered after {timeout_s:.0f}s", retryable=True)

    def close(self) -> None:
        self.flush()
        self._transport.close()


class KafkaPublisher(Publisher):
    """A :class:`Publisher` on the real broker (checks it is reachable first)."""

    def __init__(self, settings: KafkaSettings, registry: TopicRegistry | None = None) -> None:
        super().__init__(KafkaProducerTransport(settings), registry or TopicRegistry(settings.topic_prefix))
