"""Publishing envelopes: topic from the registry, key per entity, trace context in headers."""

from __future__ import annotations

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
            self._transport.produce(topic, encode(env), partition_key(env), inject_headers(headers))
        EVENTS_PUBLISHED.labels(topic).inc()

    def publish_raw(self, logical_topic: str, value: bytes, key: bytes | None, headers: list[Header]) -> None:
        """Queue bytes as they are (the dead-letter path, which must not re-validate)."""
        self._transport.produce(self.registry.physical(logical_topic), value, key, headers)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until everything queued is delivered; raise PublishError otherwise."""
        from mesh.bus._errors import PublishError

        remaining = self._transport.flush(timeout_s)
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
