"""Typed envelope construction, encoding, decoding and validation."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf.message import DecodeError, Message
from sunday.ml.v1.events_pb2 import Envelope

SCHEMA_VERSION = 1
CONTENT_TYPE = "application/x-protobuf; messageType=sunday.ml.v1.Envelope"

# Payload field name -> the id fields that must be non-empty for the event to mean anything.
_REQUIRED_IDS: dict[str, tuple[str, ...]] = {
    "task_created": ("task_id", "project_id"),
    "task_updated": ("task_id",),
    "task_assigned": ("task_id", "assignee_id"),
    "task_status_changed": ("task_id",),
    "task_completed": ("task_id",),
    "task_commented": ("task_id", "comment_id"),
    "task_viewed": ("task_id", "user_id"),
    "task_deleted": ("task_id",),
    "project_created": ("project_id",),
    "project_updated": ("project_id",),
    "milestone_created": ("milestone_id", "project_id"),
    "milestone_completed": ("milestone_id",),
    "user_joined": ("user_id",),
    "user_skills_updated": ("user_id",),
    "user_activity": ("user_id", "action"),
    "automation_created": ("automation_id",),
    "automation_run": ("automation_id",),
    "meeting_transcript": ("meeting_id",),
    "suggestion_feedback": ("suggestion_id",),
    "assignment_prediction": ("task_id",),
    "timeline_prediction": ("entity_id",),
    "nlp_prediction": ("subject_id",),
    "anomaly_prediction": ("user_id",),
    "personalization_prediction": ("user_id",),
    "automation_prediction": ("user_id",),
    "alert": ("alert_id", "dedup_key"),
    "suggestion": ("suggestion_id",),
}

EVENT_TYPES: tuple[str, ...] = tuple(f.name for f in Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields)

DERIVED_ID_NAMESPACE = uuid.UUID("6d3c1f52-8f0e-5b8e-9a57-3f1f0c2a7e41")
"""uuid5 namespace of derived event ids (fixed forever: changing it changes every output id)."""


class InvalidEvent(ValueError):
    """A message that can never be handled: undecodable or failing validation. Goes to the DLQ."""


def derived_event_id(cause_event_id: str, output_type: str, model_version: str = "", subject: str = "") -> str:
    """The id of an output event: a uuid5 over the input event's id, the output's type, the model version
    that produced it and the output's subject (which of several outputs of one type). The same input
    handled again by the same model therefore publishes the SAME id, and subscribers dedupe on it."""
    return str(uuid.uuid5(DERIVED_ID_NAMESPACE, "\x1f".join((cause_event_id, output_type, model_version, subject))))


def new_envelope(
    tenant_id: str,
    payload: Message,
    *,
    producer: str,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    caused_by: str | None = None,
    model_version: str | None = None,
    subject: str | None = None,
) -> Envelope:
    """Wrap a payload message in the envelope; the type is taken from the payload's field.

    The event id is ``event_id`` when given; else, for an output computed from an input event, pass the
    input's id as ``caused_by`` and the id is :func:`derived_event_id` of it (deterministic: a redelivered
    input re-publishes the same id). ``model_version`` defaults to the payload's
    ``provenance.model_name:model_version`` and ``subject`` to the payload's entity id (``task_id``,
    ``entity_id``, ...), so several outputs of one type from one input get distinct ids. Without either, a
    random uuid4 (events that are not derived from another event).
    """
    field = _field_for(payload)
    if event_id is None and caused_by is not None:
        version = _model_version(payload) if model_version is None else model_version
        about = _subject(field, payload) if subject is None else subject
        event_id = derived_event_id(caused_by, field, version, about)
    env = Envelope(
        event_id=event_id or str(uuid.uuid4()),
        type=field,
        tenant_id=tenant_id,
        schema_version=SCHEMA_VERSION,
        producer=producer,
    )
    env.occurred_at.FromDatetime(occurred_at or datetime.now(UTC))
    getattr(env, field).CopyFrom(payload)
    return env


def _model_version(payload: Message) -> str:
    if "provenance" not in payload.DESCRIPTOR.fields_by_name or not payload.HasField("provenance"):
        return ""
    prov = payload.provenance  # type: ignore[attr-defined]
    return f"{prov.model_name}:{prov.model_version}"


def _subject(field: str, payload: Message) -> str:
    names = _REQUIRED_IDS.get(field, ())
    return str(getattr(payload, names[0])) if names else ""


def _field_for(payload: Message) -> str:
    full_name = payload.DESCRIPTOR.full_name
    for field in Envelope.DESCRIPTOR.oneofs_by_name["payload"].fields:
        if field.message_type is not None and field.message_type.full_name == full_name:
            return str(field.name)
    raise TypeError(f"{full_name} is not an envelope payload")


def payload_of(env: Envelope) -> Message:
    """The payload message that is set."""
    field = env.WhichOneof("payload")
    if field is None:
        raise InvalidEvent("envelope has no payload")
    msg: Message = getattr(env, field)
    return msg


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def occurred_at(env: Envelope) -> datetime:
    """The event time, aware (UTC): what ``Timestamp.ToDatetime(tzinfo=UTC)`` returns (nanos truncated to
    microseconds), without its per-call conversions (it ran twice per consumed event)."""
    ts = env.occurred_at
    nanos = ts.nanos
    if 0 <= nanos < 1_000_000_000:
        return _EPOCH + timedelta(0, ts.seconds, nanos // 1000)
    return ts.ToDatetime(tzinfo=UTC)  # not a normalized Timestamp: protobuf's own rules


def encode(env: Envelope) -> bytes:
    validate(env)
    return env.SerializeToString()


def decode(data: bytes | None) -> Envelope:
    """Bytes -> validated envelope, or :class:`InvalidEvent` saying why not."""
    if not data:
        raise InvalidEvent("empty message")
    env = Envelope()
    try:
        env.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidEvent(f"not a sunday.ml.v1.Envelope: {exc}") from exc
    validate(env)
    return env


_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}").fullmatch
"""The form every producer writes; anything else goes through ``uuid.UUID`` (the same accepted set, slower)."""


def validate(env: Envelope) -> None:
    """Raise :class:`InvalidEvent` unless the envelope is complete and consistent."""
    if _CANONICAL_UUID(env.event_id) is None:
        try:
            uuid.UUID(env.event_id)
        except ValueError as exc:
            raise InvalidEvent(f"event_id {env.event_id!r} is not a UUID") from exc
    field = env.WhichOneof("payload")
    if field is None:
        raise InvalidEvent("envelope has no payload")
    if env.type != field:
        raise InvalidEvent(f"type {env.type!r} does not match payload {field!r}")
    if not env.tenant_id:
        raise InvalidEvent("tenant_id is empty")
    if not env.HasField("occurred_at") or env.occurred_at.seconds <= 0:
        raise InvalidEvent("occurred_at is missing")
    if env.schema_version != SCHEMA_VERSION:
        raise InvalidEvent(f"schema_version {env.schema_version} is not supported (expected {SCHEMA_VERSION})")
    payload = getattr(env, field)
    for name in _REQUIRED_IDS.get(field, ()):
        if not getattr(payload, name):
            raise InvalidEvent(f"{field}.{name} is empty")


def entity_id(env: Envelope) -> str:
    """The id of the entity an event is about (its partition key's second half)."""
    field = env.WhichOneof("payload")
    if field is None:
        raise InvalidEvent("envelope has no payload")
    names = _REQUIRED_IDS.get(field, ())
    return str(getattr(getattr(env, field), names[0])) if names else env.event_id


def partition_key(env: Envelope) -> bytes:
    """Tenant and entity, so that order holds per entity."""
    return f"{env.tenant_id}:{entity_id(env)}".encode()
