"""The anomaly adapters without I/O (the tenant always the caller's, the actor the calling client) and the
rank route's fast JSON path (byte for byte what the documented Ranking model serialises to)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from sunday.ml.v1 import anomaly_pb2, assignment_pb2
from sunday.ml.v1 import events_pb2 as e

from gateway.schemas.anomaly import Incident, Rules, RulesIn, ScoreIn
from gateway.schemas.assignment import Ranking, ranking_json

AT = "2026-01-05T10:15:00+01:00"


def test_score_request_events_belong_to_the_callers_tenant_and_the_scored_person() -> None:
    body = ScoreIn.model_validate({"user_id": "ada", "events": [
        {"occurred_at": AT, "action": "bulk_delete", "count": 40, "resource": "board-1"},
        {"occurred_at": AT, "action": "login", "event_id": "ev-2"}]})
    request = body.to_proto("acme")
    assert (request.tenant_id, request.user_id) == ("acme", "ada")
    assert [ev.tenant_id for ev in request.events] == ["acme", "acme"]
    assert [ev.WhichOneof("payload") for ev in request.events] == ["user_activity", "user_activity"]
    first, second = request.events
    assert (first.user_activity.user_id, first.user_activity.action, first.user_activity.count) == ("ada",
                                                                                                    "bulk_delete", 40)
    assert first.occurred_at.ToDatetime(tzinfo=UTC) == datetime(2026, 1, 5, 9, 15, tzinfo=UTC)
    assert second.event_id == "ev-2" and first.event_id and first.event_id != second.event_id


@pytest.mark.parametrize("bad", [
    {"user_id": "ada", "events": []},
    {"user_id": "ada", "events": [{"occurred_at": "2026-01-05T10:15:00", "action": "login"}]},  # no time zone
    {"user_id": "ada", "events": [{"occurred_at": AT, "action": "DROP TABLE"}]},
    {"user_id": "ada", "tenant_id": "other", "events": [{"occurred_at": AT, "action": "login"}]},
    {"user_id": "a b", "events": [{"occurred_at": AT, "action": "login"}]},
    {"user_id": "ada", "events": [{"occurred_at": AT, "action": "login", "user_id": "bob"}]},
    {"user_id": "ada", "events": [{"occurred_at": "0001-01-01T00:00:00+01:00", "action": "login"}]},  # year 0 UTC
])
def test_invalid_score_requests_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ScoreIn.model_validate(bad)


def test_rules_change_names_the_caller_as_actor_and_keeps_the_version() -> None:
    request = RulesIn(rules_yaml="rules: []\n", expected_version=3).to_proto("acme", actor="client-1")
    assert (request.tenant_id, request.actor, request.expected_version) == ("acme", "client-1", 3)
    with pytest.raises(ValidationError):
        RulesIn.model_validate({"rules_yaml": "rules: []", "expected_version": -1})
    with pytest.raises(ValidationError):
        RulesIn.model_validate({"rules_yaml": "", "expected_version": 0})
    defaults = Rules.from_proto(anomaly_pb2.RulesResponse(tenant_id="acme", rules_yaml="rules: []\n", version=0))
    assert (defaults.version, defaults.updated_at) == (0, None)


def test_incident_from_proto() -> None:
    inc = Incident.from_proto(anomaly_pb2.Incident(
        incident_id="inc-1", tenant_id="acme", entity_id="ada", severity=e.SEVERITY_CRITICAL, status="acknowledged",
        rules=["bulk_delete_burst"], alerts=3, suppressed=1, opened_at_unix=1_767_600_000,
        last_alert_at_unix=1_767_600_600))
    assert (inc.severity, inc.status, inc.rules, inc.alerts) == ("critical", "acknowledged", ["bulk_delete_burst"], 3)
    assert inc.opened_at == datetime.fromtimestamp(1_767_600_000, tz=UTC)
    assert "tenant_id" not in inc.model_dump()


def _ranking(candidates: int, reasons: int) -> assignment_pb2.RankAssigneesResponse:
    reply = assignment_pb2.RankAssigneesResponse()
    p = reply.prediction
    p.task_id, p.project_id = "task-1", "proj-1"
    p.provenance.model_name, p.provenance.model_version, p.provenance.trace_id = "assignment", "7", "ab" * 16
    p.provenance.predicted_at.FromDatetime(datetime(2026, 1, 5, 10, 15, 3, 250_000, tzinfo=UTC))
    p.provenance.feature_timestamps["skills"].FromDatetime(datetime(2026, 1, 5, 9, tzinfo=UTC))
    for i in range(candidates):
        c = p.candidates.add(user_id=f"user-{i}", score=0.9 - i / 37)
        for j in range(reasons):
            c.reasons.add(feature=f"f{j}", contribution=1 / (j + 3), description='skill "match" \u00e9')
    return reply


@pytest.mark.parametrize(("candidates", "reasons"), [(0, 0), (1, 0), (50, 3)])
def test_rank_fast_json_is_the_models_json(candidates: int, reasons: int) -> None:
    reply = _ranking(candidates, reasons)
    assert ranking_json(reply) == Ranking.from_proto(reply).model_dump_json().encode()
    reply.prediction.provenance.ClearField("predicted_at")  # an unset timestamp: null in both
    assert ranking_json(reply) == Ranking.from_proto(reply).model_dump_json().encode()
