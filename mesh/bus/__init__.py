"""The event bus: publisher, consumer runner (decode -> handle -> publish -> commit), DLQ, retries,
dedupe, transports for real Kafka and in-memory, and a faust app factory for stateful stream steps."""

from mesh.bus._dedupe import DedupeStore, InMemoryDedupe, RedisDedupe
from mesh.bus._errors import (
    BrokerUnavailable,
    BusError,
    DeadLetterCapExceeded,
    PublishError,
    RetriesExhausted,
    TransientError,
)
from mesh.bus._faust import FaustOptions, make_faust_app
from mesh.bus._kafka import KafkaConsumerTransport, KafkaProducerTransport, check_broker, ensure_topics
from mesh.bus._memory import InMemoryBroker, InMemoryConsumer, InMemoryProducer
from mesh.bus._policy import DeadLetterPolicy, RetryPolicy
from mesh.bus._publisher import KafkaPublisher, Publisher
from mesh.bus._runner import BatchHandler, ConsumerRunner, Handler, RunnerOptions, RunStats
from mesh.bus._transport import ConsumerTransport, Message, ProducerTransport

__all__ = [
    "BatchHandler",
    "BrokerUnavailable",
    "BusError",
    "ConsumerRunner",
    "ConsumerTransport",
    "DeadLetterCapExceeded",
    "DeadLetterPolicy",
    "DedupeStore",
    "FaustOptions",
    "Handler",
    "InMemoryBroker",
    "InMemoryConsumer",
    "InMemoryDedupe",
    "InMemoryProducer",
    "KafkaConsumerTransport",
    "KafkaProducerTransport",
    "KafkaPublisher",
    "Message",
    "ProducerTransport",
    "PublishError",
    "Publisher",
    "RedisDedupe",
    "RetriesExhausted",
    "RetryPolicy",
    "RunStats",
    "RunnerOptions",
    "TransientError",
    "check_broker",
    "ensure_topics",
    "make_faust_app",
]
