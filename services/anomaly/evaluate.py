"""Alerted user-hours -> incidents -> matched against planted anomalies (precision, recall, time to alert).

An incident is a run of alerted hours of one (tenant, user) with gaps of at most `gap_h` hours (what the
rules engine groups into one incident). An incident detects a planted anomaly of the same user when it
overlaps [start hour, end]. Time to alert: from the anomaly's start to the end of the first alerted hour
(the hourly window closes then).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol


class Planted(Protocol):
    @property
    def tenant_id(self) -> str: ...
    @property
    def user_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def start(self) -> datetime: ...
    @property
    def end(self) -> datetime: ...


@dataclass(frozen=True)
class Incident:
    tenant_id: str
    user_id: str
    first: datetime  # start of the first alerted hour
    last: datetime  # start of the last alerted hour


def incidents(alerts: Sequence[tuple[str, str, datetime]], gap_h: int = 2) -> list[Incident]:
    by_user: dict[tuple[str, str], list[datetime]] = defaultdict(list)
    for tenant, user, hour in alerts:
        by_user[(tenant, user)].append(hour)
    out: list[Incident] = []
    for (tenant, user), hours in by_user.items():
        hours.sort()
        first = prev = hours[0]
        for h in hours[1:]:
            if h - prev > timedelta(hours=gap_h):
                out.append(Incident(tenant, user, first, prev))
                first = h
            prev = h
        out.append(Incident(tenant, user, first, prev))
    return out


def _overlaps(inc: Incident, a: Planted) -> bool:
    start = a.start.replace(minute=0, second=0, microsecond=0)
    return inc.tenant_id == a.tenant_id and inc.user_id == a.user_id and inc.first <= a.end and inc.last >= start


def match(found: Sequence[Incident], planted: Sequence[Planted]) -> dict[str, Any]:
    """Per kind and overall: precision, recall, F1, median minutes to alert; plus the missed anomalies."""
    hit: dict[int, Incident] = {}
    for i, a in enumerate(planted):
        matches = [inc for inc in found if _overlaps(inc, a)]
        if matches:
            hit[i] = min(matches, key=lambda m: m.first)
    true_incidents = {id(inc) for inc in found if any(_overlaps(inc, a) for a in planted)}
    kinds = sorted({a.kind for a in planted})
    per_kind: dict[str, dict[str, float]] = {}
    for kind in [*kinds, "overall"]:
        idx = [i for i, a in enumerate(planted) if kind in ("overall", a.kind)]
        recall = sum(i in hit for i in idx) / len(idx) if idx else float("nan")
        if kind == "overall":
            precision = len(true_incidents) / len(found) if found else float("nan")
        else:  # an incident matched to this kind is a true one; false ones are not of any kind: overall only
            mine = [inc for inc in found if any(_overlaps(inc, planted[i]) for i in idx)]
            false = len(found) - len(true_incidents)
            precision = len(mine) / (len(mine) + false * len(idx) / max(len(planted), 1)) if mine else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        delays = sorted(max(0.0, (hit[i].first + timedelta(hours=1) - planted[i].start).total_seconds() / 60)
                        for i in idx if i in hit)
        per_kind[kind] = {"n": len(idx), "precision": precision, "recall": recall, "f1": f1,
                          "median_minutes_to_alert": delays[len(delays) // 2] if delays else float("nan")}
    missed = [{"tenant_id": a.tenant_id, "user_id": a.user_id, "kind": a.kind, "start": a.start.isoformat()}
              for i, a in enumerate(planted) if i not in hit]
    return {"per_kind": per_kind, "incidents": len(found), "false_incidents": len(found) - len(true_incidents),
            "missed": missed}
