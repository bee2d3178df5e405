"""Typed envelope, codecs, the topic registry (each topic declared once) and the shared vocabularies
(task types, statuses, event kinds: each defined once)."""

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
from mesh.events._vocab import (
    OTHER_TASK_TYPE,
    STATUS_DONE,
    TASK_STATUSES,
    TASK_TYPE_SLOTS,
    TASK_TYPES,
    UNSPECIFIED_STATUS,
    status_name,
    task_type_slot,
)

__all__ = [
    "CONTENT_TYPE",
    "EVENT_TYPES",
    "OTHER_TASK_TYPE",
    "SCHEMA_VERSION",
    "STATUS_DONE",
    "TASK_STATUSES",
    "TASK_TYPES",
    "TASK_TYPE_SLOTS",
    "UNSPECIFIED_STATUS",
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
    "status_name",
    "task_type_slot",
    "validate",
]
