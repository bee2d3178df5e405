"""The event bus: publisher, consumer runner (decode -> handle -> publish -> commit), DLQ, retries,
dedupe, transports for real Kafka and in-memory, and a faust app factory for stateful stream steps."""

from mesh.bus._classify import Failure, classify
from mesh.bus._dedupe import DedupeStore, InMemoryDedupe, RedisDedupe
from mesh.bus._errors import (
    BrokerUnavailable,
    BusError,
    DeadLetterCapExceeded,
    PermanentError,
    PublishError,
    TransientError,
)
from mesh.bus._faust import FaustOptions, make_faust_app
from mesh.bus._kafka import KafkaConsumerTransport, KafkaProducerTransport, check_broker, ensure_topics
from mesh.bus._memory import InMemoryBroker, InMemoryConsumer, InMemoryProducer
from mesh.bus._policy import DeadLetterPolicy, RetryPolicy
from mesh.bus._publisher import KafkaPublisher, Publisher
from mesh.bus._runner import BatchHandler, ConsumerRunner, Handler, RunnerOptions, RunStats, producer_context
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
    "Failure",
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
    "PermanentError",
    "ProducerTransport",
    "PublishError",
    "Publisher",
    "RedisDedupe",
    "RetryPolicy",
    "RunStats",
    "RunnerOptions",
    "TransientError",
    "check_broker",
    "classify",
    "ensure_topics",
    "make_faust_app",
    "producer_context",
]
