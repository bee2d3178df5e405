"""Events -> alerts through the real ensemble (tiny, ONNX) and rules; each planted anomaly one incident."""

from __future__ import annotations

from collections import Counter
from typing import Any

from services.anomaly.demo import incidents_of, results
from services.anomaly.detector import alerts_for
from services.anomaly.ensemble import OnnxEnsemble


def test_each_planted_anomaly_is_one_incident_with_evidence(world: tuple[Any, list[Any], OnnxEnsemble]) -> None:
    sim, events, ens = world
    alerts, engine = alerts_for(events, ens)
    assert alerts, "no alert at all"
    a = alerts[0].alert
    assert a.provenance.model_version == "t1" and len(a.evidence) == 3 and a.window_keys
    per_rule = Counter((x.alert.incident_id, x.alert.rule) for x in alerts)
    incidents = incidents_of(alerts)
    assert len(incidents) == len(engine.state.incidents)
    summary = results(sim, alerts)
    assert summary["detected"] + len(summary["missed"]) == summary["planted"] == len(sim.truth.anomalies)
    assert summary["detected"] >= 1
    for planted in sim.truth.anomalies:  # never several incidents for one planted anomaly
        same_user = [i for i in incidents if i.user_id == planted.user_id and i.first <= planted.end
                     and i.last >= planted.start.replace(minute=0, second=0, microsecond=0)]
        assert len(same_user) <= 1
    assert max(per_rule.values()) <= 3  # cooldown: a rule repeats within one incident at most a few times


def test_same_events_same_alert_ids(world: tuple[Any, list[Any], OnnxEnsemble]) -> None:
    _, events, ens = world
    first, _ = alerts_for(events, ens)
    again, _ = alerts_for(events, ens)
    assert [x.event_id for x in first] == [x.event_id for x in again]
