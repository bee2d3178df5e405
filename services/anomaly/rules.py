"""Declarative alert rules, validated at load (errors name the field), and the engine that applies them.

Rules (YAML or Python data):

    cooldown_minutes: 60          # a (tenant, entity, rule) alert is not repeated within this
    incident_gap_minutes: 120     # alerts of one entity closer than this join the same incident
    resolve_after_minutes: 180    # an incident with no alert for this long is resolved
    rules:
      - {name: unusual_activity, kind: score, thresholds: {info: 2.0, warning: 4.0, critical: 8.0}}
      - {name: bulk_delete_burst, kind: static, action: bulk_delete, min_events: 5, within_minutes: 10,
         severity: critical}
      - {name: exfiltration, kind: composite, all_of: [unusual_activity, bulk_delete_burst],
         within_minutes: 60, severity: critical}

The engine is deterministic (its output depends on the signals in order, never on the wall clock), so a
replay after a crash raises the same alerts with the same ids (`new_envelope(caused_by=...)`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sunday.ml.v1 import common_pb2 as c
from sunday.ml.v1 import events_pb2 as e

from mesh.events import Envelope, new_envelope

SeverityName = Literal["info", "warning", "critical"]
SEVERITY = {"info": e.SEVERITY_INFO, "warning": e.SEVERITY_WARNING, "critical": e.SEVERITY_CRITICAL}
_RANK = {"info": 1, "warning": 2, "critical": 3}


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, pattern=r"^[a-z][a-z0-9_]*$", description="unique, snake_case")


class ScoreRule(_Rule):
    kind: Literal["score"]
    thresholds: dict[SeverityName, float] = Field(min_length=1, description="severity -> minimum anomaly score")

    @model_validator(mode="after")
    def _ordered(self) -> ScoreRule:
        ordered = sorted(self.thresholds.items(), key=lambda kv: _RANK[kv[0]])
        if any(a[1] >= b[1] for a, b in itertools.pairwise(ordered)):
            raise ValueError("thresholds must increase with severity (info < warning < critical)")
        return self


class StaticRule(_Rule):
    kind: Literal["static"]
    action: str = Field(min_length=1, description="UserActivity action counted, e.g. bulk_delete")
    min_events: int = Field(gt=0, description="alert when at least this many events ...")
    within_minutes: int = Field(gt=0, description="... fall within this many minutes")
    severity: SeverityName = "warning"


class CompositeRule(_Rule):
    kind: Literal["composite"]
    all_of: list[str] = Field(min_length=2, description="rules that must all fire for the entity ...")
    within_minutes: int = Field(gt=0, description="... within this many minutes")
    severity: SeverityName = "critical"


AnyRule = Annotated[ScoreRule | StaticRule | CompositeRule, Field(discriminator="kind")]


class RuleSet(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    rules: list[AnyRule] = Field(min_length=1)
    cooldown_minutes: int = Field(60, ge=0)
    incident_gap_minutes: int = Field(120, gt=0)
    resolve_after_minutes: int = Field(180, gt=0)

    @model_validator(mode="after")
    def _references(self) -> RuleSet:
        names = [r.name for r in self.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"rule names must be unique: {dup}")
        for r in self.rules:
            if isinstance(r, CompositeRule):
                unknown = [n for n in r.all_of if n not in names or n == r.name]
                if unknown:
                    raise ValueError(f"composite rule {r.name!r}: all_of names unknown rules {unknown}")
        return self


class RuleError(ValueError):
    """A rule file that does not validate; the message names each bad field (e.g. `rules.1.min_events`)."""


def load_rules(source: str | Mapping[str, Any]) -> RuleSet:
    """Validate YAML text or Python data into a RuleSet, or raise RuleError naming the fields."""
    try:
        data = yaml.safe_load(source) if isinstance(source, str) else dict(source)
    except yaml.YAMLError as exc:
        raise RuleError(f"rules are not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise RuleError("rules must be a mapping with a `rules` list")
    try:
        return RuleSet.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}"
                             for err in exc.errors())
        raise RuleError(f"invalid rules: {problems}") from exc


@dataclass(frozen=True)
class Signal:
    """What the engine sees: a scored window of an entity, or one activity event (`action`)."""

    tenant_id: str
    entity_id: str
    at: datetime
    cause_event_id: str
    score: float | None = None
    action: str | None = None
    evidence: tuple[tuple[str, float], ...] = ()
    window_keys: tuple[str, ...] = ()


@dataclass
class Incident:
    incident_id: str
    tenant_id: str
    entity_id: str
    opened_at: datetime
    last_alert_at: datetime
    severity: str
    rules: set[str] = field(default_factory=set)
    alerts: int = 0
    suppressed: int = 0
    status: str = "open"  # open, acknowledged, resolved


@dataclass
class EngineState:
    last_fired: dict[tuple[str, str, str], datetime] = field(default_factory=dict)
    recent_actions: dict[tuple[str, str, str], deque[datetime]] = field(default_factory=dict)
    incidents: dict[str, Incident] = field(default_factory=dict)
    open_by_entity: dict[tuple[str, str], str] = field(default_factory=dict)


class RuleEngine:
    """Applies a RuleSet to signals: dedup by (tenant, entity, rule) + cooldown, incidents, auto-resolve."""

    def __init__(self, rules: RuleSet, model_version: str = "", state: EngineState | None = None) -> None:
        self.rules = rules
        self.model_version = model_version
        self.state = state or EngineState()

    def observe(self, s: Signal) -> list[Envelope]:
        """Alerts (ml.alerts envelopes) this signal raises, after dedup and cooldown."""
        fired: list[tuple[str, str]] = []  # (rule, severity)
        for rule in self.rules.rules:
            if isinstance(rule, ScoreRule) and s.score is not None:
                hit = [sev for sev, thr in rule.thresholds.items() if s.score >= thr]
                if hit:
                    fired.append((rule.name, max(hit, key=lambda x: _RANK[x])))
            elif isinstance(rule, StaticRule) and s.action == rule.action:
                q = self.state.recent_actions.setdefault((s.tenant_id, s.entity_id, rule.name), deque())
                q.append(s.at)
                while q and s.at - q[0] > timedelta(minutes=rule.within_minutes):
                    q.popleft()
                if len(q) >= rule.min_events:
                    fired.append((rule.name, rule.severity))
        for rule in self.rules.rules:
            if isinstance(rule, CompositeRule):
                fresh = {name for name, _ in fired}
                recent = all(name in fresh or self._fired_within(s, name, rule.within_minutes)
                             for name in rule.all_of)
                if recent and any(name in fresh for name in rule.all_of):
                    fired.append((rule.name, rule.severity))
        return [alert for name, sev in fired if (alert := self._raise(s, name, sev)) is not None]

    def _fired_within(self, s: Signal, rule: str, minutes: int) -> bool:
        last = self.state.last_fired.get((s.tenant_id, s.entity_id, rule))
        return last is not None and s.at - last <= timedelta(minutes=minutes)

    def _incident(self, s: Signal, severity: str) -> Incident:
        key = (s.tenant_id, s.entity_id)
        inc_id = self.state.open_by_entity.get(key)
        inc = self.state.incidents.get(inc_id) if inc_id else None
        gap = timedelta(minutes=self.rules.incident_gap_minutes)
        if inc is None or inc.status == "resolved" or s.at - inc.last_alert_at > gap:
            digest = hashlib.sha256(f"{s.tenant_id}|{s.entity_id}|{s.cause_event_id}".encode()).hexdigest()[:16]
            inc = Incident(f"inc-{digest}", s.tenant_id, s.entity_id, s.at, s.at, severity)
            self.state.incidents[inc.incident_id] = inc
            self.state.open_by_entity[key] = inc.incident_id
        return inc

    def _raise(self, s: Signal, rule: str, severity: str) -> Envelope | None:
        key = (s.tenant_id, s.entity_id, rule)
        last = self.state.last_fired.get(key)
        inc = self._incident(s, severity)
        if last is not None and s.at - last < timedelta(minutes=self.rules.cooldown_minutes):
            inc.suppressed += 1  # the same alert again: it belongs to the incident, nobody is paged twice
            inc.last_alert_at = max(inc.last_alert_at, s.at)
            return None
        self.state.last_fired[key] = s.at
        inc.last_alert_at, inc.alerts = s.at, inc.alerts + 1
        inc.rules.add(rule)
        if _RANK[severity] > _RANK[inc.severity]:
            inc.severity = severity
        alert = e.Alert(capability="anomaly", kind="unusual_activity", severity=SEVERITY[severity],
                        subject_kind="user", subject_id=s.entity_id, score=s.score or 0.0,
                        dedup_key=f"{s.tenant_id}:{s.entity_id}:{rule}", rule=rule, incident_id=inc.incident_id,
                        message=f"{rule} ({severity}) for user {s.entity_id}",
                        provenance=c.Provenance(model_name="anomaly", model_version=self.model_version),
                        window_keys=list(s.window_keys))
        for feature, contribution in s.evidence:
            alert.evidence.add(feature=feature, contribution=contribution)
        env = new_envelope(s.tenant_id, alert, producer="anomaly", occurred_at=s.at, caused_by=s.cause_event_id,
                           subject=f"{s.entity_id}:{rule}")
        alert_id = env.event_id
        env.alert.alert_id = alert_id
        return env

    def resolve_quiet(self, now: datetime) -> list[Incident]:
        """Resolve open incidents whose last alert is older than `resolve_after_minutes` (the signal ended)."""
        after = timedelta(minutes=self.rules.resolve_after_minutes)
        done = [inc for inc in self.state.incidents.values()
                if inc.status != "resolved" and now - inc.last_alert_at >= after]
        for inc in done:
            inc.status = "resolved"
            self.state.open_by_entity.pop((inc.tenant_id, inc.entity_id), None)
        return done

    def set_status(self, incident_id: str, status: Literal["acknowledged", "resolved"]) -> Incident:
        inc = self.state.incidents.get(incident_id)
        if inc is None:
            raise KeyError(f"no incident {incident_id!r}")
        inc.status = status
        if status == "resolved":
            self.state.open_by_entity.pop((inc.tenant_id, inc.entity_id), None)
        return inc
