"""For the demo: which planted anomalies of a simulation became incidents, and which were missed.

    from services.anomaly.demo import results
    summary = results(sim, alerts)   # sim: simulator.Simulation; alerts: ml.alerts envelopes
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

from mesh.events import Envelope, occurred_at
from services.anomaly.evaluate import Incident, match

_HOUR = timedelta(hours=1)


def incidents_of(alerts: list[Envelope]) -> list[Incident]:
    """One Incident per incident id (alerts without one: per alert), spanning its alerts' hours."""
    groups: dict[str, list[Envelope]] = defaultdict(list)
    for env in alerts:
        if env.WhichOneof("payload") == "alert" and env.alert.capability == "anomaly":
            groups[env.alert.incident_id or env.event_id].append(env)
    out = []
    for envs in groups.values():
        times = sorted(occurred_at(x) for x in envs)
        # an alert is raised when its hour closes: the hour it is about started an hour earlier
        first = times[0].replace(minute=0, second=0, microsecond=0)
        last = times[-1].replace(minute=0, second=0, microsecond=0)
        out.append(Incident(envs[0].tenant_id, envs[0].alert.subject_id, first - _HOUR, last))
    return out


def results(sim: Any, alerts: list[Envelope]) -> dict[str, Any]:
    """Planted anomalies detected as incidents, the missed ones, and the incidents that matched nothing."""
    planted = list(sim.truth.anomalies)
    found = incidents_of(alerts)
    res = match(found, planted)
    overall = res["per_kind"]["overall"]
    return {
        "planted": len(planted),
        "detected": len(planted) - len(res["missed"]),
        "missed": res["missed"],
        "incidents": len(found),
        "false_incidents": res["false_incidents"],
        "alerts": sum(1 for a in alerts if a.WhichOneof("payload") == "alert"),
        "precision": overall["precision"],
        "recall": overall["recall"],
        "per_kind": {k: {"n": v["n"], "recall": v["recall"]} for k, v in res["per_kind"].items() if k != "overall"},
    }
