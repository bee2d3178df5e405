from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.sdk.trace import TracerProvider

from mesh.models import build_provenance


def test_provenance_carries_model_trace_and_feature_times() -> None:
    seen = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)
    provenance = build_provenance("assignee-ranker", "7", trace_id="AB" * 16,
                                  feature_timestamps={"person_activity": seen, "task_text": seen - timedelta(hours=1)},
                                  predicted_at=seen + timedelta(seconds=1))
    assert (provenance.model_name, provenance.model_version) == ("assignee-ranker", "7")
    assert provenance.trace_id == "ab" * 16
    assert provenance.feature_timestamps["person_activity"].ToDatetime(tzinfo=UTC) == seen
    assert provenance.feature_timestamps["task_text"].ToDatetime(tzinfo=UTC) == seen - timedelta(hours=1)
    assert provenance.predicted_at.ToDatetime(tzinfo=UTC) == seen + timedelta(seconds=1)


def test_trace_id_defaults_to_the_current_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("predict") as span:
        provenance = build_provenance("m", "1")
    assert provenance.trace_id == format(span.get_span_context().trace_id, "032x")
    assert build_provenance("m", "1").trace_id == ""  # no span, no invented id
    assert build_provenance("m", "1", trace_id=255).trace_id == "0" * 30 + "ff"


def test_ambiguous_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        build_provenance("m", "1", feature_timestamps={"v": datetime(2025, 1, 1)})
    with pytest.raises(ValueError, match="32 hex"):
        build_provenance("m", "1", trace_id="not-a-trace")
