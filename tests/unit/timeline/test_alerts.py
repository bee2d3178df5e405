"""Deadline-risk alerts: once per crossing of the threshold, re-armed only below threshold - hysteresis;
the active state lives in the service's aggregate store (a new tracker on the same store does not alert
again: a restarted service); forecasts are republished only when they moved; ids derive from what was
recorded, so outputs computed again before their record carry the same ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sunday.ml.v1 import common_pb2, events_pb2

from mesh.features import InMemoryAggregates
from services.timeline.alerts import AlertPolicy, RiskTracker, dedup_key, output_reducers
from services.timeline.state import TimelineState

POLICY = AlertPolicy(threshold=0.6, hysteresis=0.2, critical=0.9)
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def state(policy: AlertPolicy = POLICY) -> TimelineState:
    s = TimelineState(InMemoryAggregates(output_reducers(policy)))
    s.store.mark_built()
    return s


def forecast(p_miss: float, subject: str = "ms-1", p50_hours: float = 10.0,
             kind: int = events_pb2.ENTITY_KIND_MILESTONE) -> events_pb2.TimelinePrediction:
    p = events_pb2.TimelinePrediction(entity_kind=kind, entity_id=subject, project_id="p-1",  # type: ignore[arg-type]
                                      deadline_miss_probability=p_miss,
                                      provenance=common_pb2.Provenance(model_name="m", model_version="1"))
    p.completion_p50.FromDatetime(T0 + timedelta(hours=p50_hours))
    return p


def fired(tracker: RiskTracker, values: list[float], subject: str = "ms-1") -> list[int]:
    """Feed one forecast per value (P(miss) moving: each is republished) and record what was published."""
    out = []
    for i, p in enumerate(values):
        outputs = tracker.outputs("t-1", [(forecast(p, subject), f"in-{i}")], T0 + timedelta(minutes=i))
        tracker.record(outputs)
        if any(env.type == "alert" for env in outputs):
            out.append(i)
    return out


def test_fires_once_when_crossing_and_not_again_until_reset() -> None:
    tracker = RiskTracker(state(), POLICY)
    # up across 0.6 (fires), wobbles above 0.4 (quiet), falls below 0.4 (re-arms), up again (fires)
    values = [0.1, 0.55, 0.61, 0.7, 0.5, 0.45, 0.65, 0.41, 0.39, 0.5, 0.6, 0.95]
    assert fired(tracker, values) == [2, 10]


def test_alert_content_dedup_key_and_id() -> None:
    tracker = RiskTracker(state(), POLICY)
    outputs = tracker.outputs("t-1", [(forecast(0.93, "p-9", kind=events_pb2.ENTITY_KIND_PROJECT), "in-1")], T0)
    env = next(e for e in outputs if e.type == "alert")
    alert = env.alert
    assert alert.dedup_key == dedup_key("t-1", "project", "p-9") == "timeline:deadline_risk:t-1:project:p-9"
    assert alert.severity == events_pb2.SEVERITY_CRITICAL and alert.capability == "timeline"
    assert alert.kind == "deadline_risk" and alert.score == pytest.approx(0.93) and "93%" in alert.message
    assert env.event_id == alert.alert_id
    again = tracker.outputs("t-1", [(forecast(0.95, "p-9", kind=events_pb2.ENTITY_KIND_PROJECT), "in-1")], T0)
    assert [e.event_id for e in again] == [e.event_id for e in outputs]  # not recorded yet: the same ids
    other = tracker.outputs("t-1", [(forecast(0.95, "p-9", kind=events_pb2.ENTITY_KIND_PROJECT), "in-2")], T0)
    assert [e.event_id for e in other if e.type == "alert"] == [alert.alert_id]  # whichever input raised it


def test_forecasts_are_republished_only_when_they_moved() -> None:
    tracker = RiskTracker(state(), POLICY)
    first = tracker.outputs("t-1", [(forecast(0.1), "in-1")], T0)
    tracker.record(first)
    assert len(first) == 1
    assert tracker.outputs("t-1", [(forecast(0.11, p50_hours=10.5), "in-2")], T0) == []  # within 1 h and 0.02
    moved = tracker.outputs("t-1", [(forecast(0.1, p50_hours=12.0), "in-3")], T0)
    assert len(moved) == 1 and moved[0].event_id != first[0].event_id


def test_subjects_are_independent() -> None:
    tracker = RiskTracker(state(), POLICY)
    assert fired(tracker, [0.7], "a") == [0]
    assert fired(tracker, [0.7], "b") == [0]
    assert fired(tracker, [0.8], "a") == []


def test_a_restart_does_not_alert_again() -> None:
    shared = state()
    assert fired(RiskTracker(shared, POLICY), [0.7]) == [0]
    assert fired(RiskTracker(shared, POLICY), [0.75, 0.8]) == []  # the new process shares the store


@pytest.mark.integration
def test_a_restart_does_not_alert_again_with_redis() -> None:
    import redis

    from mesh.config import MeshSettings
    from mesh.features import RedisAggregates

    client = redis.Redis.from_url(MeshSettings().redis.url)
    namespace = f"test-alerts-{uuid.uuid4().hex[:8]}"

    def tracker() -> RiskTracker:
        s = TimelineState(RedisAggregates(client, namespace, reducers=output_reducers(POLICY)))
        s.store.mark_built()
        return RiskTracker(s, POLICY)

    try:
        assert fired(tracker(), [0.7]) == [0]
        assert fired(tracker(), [0.8, 0.3, 0.7]) == [2]
    finally:
        RedisAggregates(client, namespace).clear()
        client.close()


def test_policy_rejects_a_hysteresis_above_the_threshold() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        AlertPolicy(threshold=0.3, hysteresis=0.4)
