"""Deadline-risk alerts: once per crossing of the threshold, re-armed only below threshold - hysteresis,
and the active state survives a restart (a new alerter on the same store)."""

from __future__ import annotations

import uuid

import pytest
from sunday.ml.v1 import events_pb2

from services.timeline.alerts import AlertPolicy, DeadlineRiskAlerter, InMemoryAlertState, dedup_key

POLICY = AlertPolicy(threshold=0.6, hysteresis=0.2, critical=0.9)


def fired(alerter: DeadlineRiskAlerter, values: list[float], subject: str = "ms-1") -> list[int]:
    return [i for i, p in enumerate(values) if alerter.observe("t-1", "milestone", subject, p) is not None]


def test_fires_once_when_crossing_and_not_again_until_reset() -> None:
    alerter = DeadlineRiskAlerter(InMemoryAlertState(), POLICY)
    # up across 0.6 (fires), wobbles above 0.4 (quiet), falls below 0.4 (re-arms), up again (fires)
    values = [0.1, 0.55, 0.61, 0.7, 0.5, 0.45, 0.65, 0.41, 0.39, 0.5, 0.6, 0.95]
    assert fired(alerter, values) == [2, 10]


def test_alert_content_and_dedup_key() -> None:
    alert = DeadlineRiskAlerter(InMemoryAlertState(), POLICY).observe("t-1", "project", "p-9", 0.93)
    assert alert is not None
    assert alert.dedup_key == dedup_key("t-1", "project", "p-9") == "timeline:deadline_risk:t-1:project:p-9"
    assert alert.severity == events_pb2.SEVERITY_CRITICAL and alert.capability == "timeline"
    assert alert.kind == "deadline_risk" and alert.score == pytest.approx(0.93) and "93%" in alert.message


def test_subjects_are_independent() -> None:
    alerter = DeadlineRiskAlerter(InMemoryAlertState(), POLICY)
    assert fired(alerter, [0.7], "a") == [0]
    assert fired(alerter, [0.7], "b") == [0]
    assert fired(alerter, [0.8], "a") == []


def test_a_restart_does_not_alert_again() -> None:
    state = InMemoryAlertState()
    assert fired(DeadlineRiskAlerter(state, POLICY), [0.7]) == [0]
    assert fired(DeadlineRiskAlerter(state, POLICY), [0.75, 0.8]) == []  # the new process shares the store


@pytest.mark.integration
def test_a_restart_does_not_alert_again_with_redis() -> None:
    from mesh.config import MeshSettings
    from services.timeline.alerts import RedisAlertState

    namespace = f"test-alerts-{uuid.uuid4().hex[:8]}"
    url = MeshSettings().redis.url
    assert fired(DeadlineRiskAlerter(RedisAlertState(url, namespace), POLICY), [0.7]) == [0]
    restarted = DeadlineRiskAlerter(RedisAlertState(url, namespace), POLICY)
    assert fired(restarted, [0.8, 0.3, 0.7]) == [2]
    RedisAlertState(url, namespace).clear(dedup_key("t-1", "milestone", "ms-1"))


def test_policy_rejects_a_hysteresis_above_the_threshold() -> None:
    with pytest.raises(ValueError, match="hysteresis"):
        AlertPolicy(threshold=0.3, hysteresis=0.4)
