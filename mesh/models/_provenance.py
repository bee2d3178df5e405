"""Provenance of a prediction: model name and version, trace id, feature timestamps."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from opentelemetry import trace
from sunday.ml.v1.common_pb2 import Provenance

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def build_provenance(
    model_name: str,
    model_version: str,
    trace_id: str | int | None = None,
    feature_timestamps: Mapping[str, datetime] | None = None,
    predicted_at: datetime | None = None,
) -> Provenance:
    """A ``sunday.ml.v1.Provenance``. ``trace_id`` defaults to the current span's; timestamps must be
    timezone-aware (a naive one is ambiguous); ``predicted_at`` defaults to now."""
    provenance = Provenance(model_name=model_name, model_version=str(model_version), trace_id=_trace_id(trace_id))
    for view, when in (feature_timestamps or {}).items():
        provenance.feature_timestamps[view].FromDatetime(_aware(view, when))
    provenance.predicted_at.FromDatetime(_aware("predicted_at", predicted_at or datetime.now(UTC)))
    return provenance


def _trace_id(trace_id: str | int | None) -> str:
    if trace_id is None:
        context = trace.get_current_span().get_span_context()
        return format(context.trace_id, "032x") if context.is_valid else ""
    text = format(trace_id, "032x") if isinstance(trace_id, int) else trace_id.lower()
    if not _TRACE_ID.match(text):
        raise ValueError(f"trace id {trace_id!r} is not 32 hex characters")
    return text


def _aware(what: str, when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError(f"{what}: timestamp {when} has no timezone")
    return when
