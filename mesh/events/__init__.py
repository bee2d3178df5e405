"""Typed envelope, codecs and the topic registry (each topic declared once)."""

from sunday.ml.v1.events_pb2 import Envelope

from mesh.events._codec import (
    CONTENT_TYPE,
    EVENT_TYPES,
    SCHEMA_VERSION,
    InvalidEvent,
    decode,
    derived_event_id,
    encode,
    entity_id,
    new_envelope,
    occurred_at,
    partition_key,
    payload_of,
    validate,
)
from mesh.events._examples import example_events
from mesh.events._topics import TopicRegistry, TopicSpec, UnknownTopic

__all__ = [
    "CONTENT_TYPE",
    "EVENT_TYPES",
    "SCHEMA_VERSION",
    "Envelope",
    "InvalidEvent",
    "TopicRegistry",
    "TopicSpec",
    "UnknownTopic",
    "decode",
    "derived_event_id",
    "encode",
    "entity_id",
    "example_events",
    "new_envelope",
    "occurred_at",
    "partition_key",
    "payload_of",
    "validate",
]
