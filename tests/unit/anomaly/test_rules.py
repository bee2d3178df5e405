"""Alert rules: validation errors name the field; dedup, cooldown, grouping, composite, auto-resolve."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mesh.events import decode, encode
from services.anomaly.rules import RuleEngine, RuleError, Signal, load_rules

T = datetime(2026, 1, 5, 10, tzinfo=UTC)
RULES = """
cooldown_minutes: 60
incident_gap_minutes: 120
resolve_after_minutes: 180
rules:
  - {name: unusual_activity, kind: score, thresholds: {info: 2.0, warning: 4.0, critical: 8.0}}
  - {name: bulk_delete_burst, kind: static, action: bulk_delete, min_events: 3, within_minutes: 10,
     severity: critical}
  - {name: exfiltration, kind: composite, all_of: [unusual_activity, bulk_delete_burst], within_minutes: 60}
"""


def _score(minutes: float, score: float, user: str = "u1", eid: str = "") -> Signal:
    return Signal("tn", user, T + timedelta(minutes=minutes), eid or f"00000000-0000-4000-8000-{int(minutes):012d}",
                  score=score, evidence=(("n_export", 3.2),), window_keys=("tn|user|u1|tumbling_1h|0",))


def _delete(minutes: float, user: str = "u1") -> Signal:
    return Signal("tn", user, T + timedelta(minutes=minutes), f"00000000-0000-4000-9000-{int(minutes):012d}",
                  action="bulk_delete")


@pytest.mark.parametrize(("text", "field"), [
    ("rules: [{name: a, kind: static, action: x, min_events: 0, within_minutes: 5}]", "rules.0.static.min_events"),
    ("rules: [{name: a, kind: score, thresholds: {info: 5, warning: 3}}]", "rules.0.score"),
    ("rules: [{name: a, kind: nope}]", "rules.0"),
    ("rules: [{name: a, kind: composite, all_of: [a, b], within_minutes: 5}]", "rules"),
    ("cooldown_minutes: -1\nrules: [{name: a, kind: score, thresholds: {info: 1}}]", "cooldown_minutes"),
    ("rules: [{name: a, kind: score, thresholds: {info: 1}, extra: 1}]", "rules.0.score.extra"),
])
def test_bad_rules_name_the_field(text: str, field: str) -> None:
    with pytest.raises(RuleError, match=field.replace(".", r"\.")):
        load_rules(text)


def test_not_yaml_is_a_clear_error() -> None:
    with pytest.raises(RuleError, match="YAML"):
        load_rules("rules: [unclosed")


def test_severity_dedup_and_cooldown() -> None:
    eng = RuleEngine(load_rules(RULES), model_version="7")
    first = eng.observe(_score(0, 5.0))
    assert [a.alert.severity for a in first] == [2]  # warning (>= 4, < 8)
    assert eng.observe(_score(30, 9.0)) == []  # same (tenant, entity, rule) within the cooldown
    again = eng.observe(_score(95, 9.0))
    assert len(again) == 1 and again[0].alert.severity == 3
    assert eng.observe(_score(100, 1.0)) == []  # below every threshold


def test_alert_has_evidence_provenance_and_deterministic_id() -> None:
    one = RuleEngine(load_rules(RULES), model_version="7").observe(_score(0, 5.0))[0]
    two = RuleEngine(load_rules(RULES), model_version="7").observe(_score(0, 5.0))[0]
    assert one.event_id == two.event_id == one.alert.alert_id  # a replay publishes the same id
    a = decode(encode(one)).alert
    assert a.rule == "unusual_activity" and a.dedup_key == "tn:u1:unusual_activity"
    assert [(r.feature, r.contribution) for r in a.evidence] == [("n_export", 3.2)]
    assert list(a.window_keys) == ["tn|user|u1|tumbling_1h|0"] and a.provenance.model_version == "7"


def test_static_and_composite_rules_group_into_one_incident() -> None:
    eng = RuleEngine(load_rules(RULES))
    assert eng.observe(_delete(0)) == [] and eng.observe(_delete(4)) == []
    burst = eng.observe(_delete(8))  # 3 deletes within 10 minutes
    assert [a.alert.rule for a in burst] == ["bulk_delete_burst"]
    both = eng.observe(_score(20, 5.0))  # score rule + the burst 12 min ago -> composite too
    assert sorted(a.alert.rule for a in both) == ["exfiltration", "unusual_activity"]
    incidents = {a.alert.incident_id for a in [*burst, *both]}
    assert len(incidents) == 1
    inc = eng.state.incidents[incidents.pop()]
    assert inc.severity == "critical" and inc.alerts == 3
    assert eng.observe(_delete(30, user="u2")) == []  # another user's deletes count for that user only


def test_quiet_incident_auto_resolves_and_a_new_one_opens_later() -> None:
    eng = RuleEngine(load_rules(RULES))
    first = eng.observe(_score(0, 5.0))[0].alert.incident_id
    assert eng.resolve_quiet(T + timedelta(minutes=100)) == []
    resolved = eng.resolve_quiet(T + timedelta(minutes=181))
    assert [i.incident_id for i in resolved] == [first]
    later = eng.observe(_score(300, 5.0))[0].alert.incident_id
    assert later != first and eng.state.incidents[first].status == "resolved"
