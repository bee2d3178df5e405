"""/v1/anomaly: score a person's recent activity, the tenant's incidents, its alert rules; protobuf conversions.

The tenant is always the credential's: it becomes the tenant of every event sent for scoring and of every
incident or rules request, whatever the body says (a ``tenant_id`` in a body is refused as an unknown field).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, Field, field_validator
from sunday.ml.v1 import anomaly_pb2
from sunday.ml.v1 import events_pb2 as e

from gateway.schemas.common import Id, Provenance, Reason, Strict, provenance, reason
from mesh.events import new_envelope

MAX_EVENTS = 5_000
MAX_RULES_BYTES = 64 * 1024
"""The anomaly service refuses larger rule files too; refused here first, as a 422 on the field."""
SeverityName = Literal["unspecified", "info", "warning", "critical"]
_SEVERITY: dict[int, SeverityName] = {e.SEVERITY_UNSPECIFIED: "unspecified", e.SEVERITY_INFO: "info",
                                      e.SEVERITY_WARNING: "warning", e.SEVERITY_CRITICAL: "critical"}


class ActivityIn(Strict):
    """One activity event of the person scored (the service's `user_activity` event, without the tenant)."""

    occurred_at: AwareDatetime = Field(description="when it happened (with a time zone)")
    action: str = Field(pattern=r"^[a-z][a-z_]{0,63}$",
                        description="login, edit, export, bulk_delete, permission_change, api_call, ...")
    resource: str = Field(default="", max_length=256)
    count: int = Field(default=1, ge=0, le=1_000_000, description="items affected")
    ip: str = Field(default="", max_length=64)
    device: str = Field(default="", max_length=128)
    session_id: str = Field(default="", max_length=128)
    event_id: Id | None = Field(default=None, description="the event's id (default: a new one)")

    @field_validator("occurred_at")
    @classmethod
    def _in_utc_range(cls, value: datetime) -> datetime:
        try:  # 0001-01-01T00:00+01:00 is year 0 in UTC: no timestamp can hold it
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("occurred_at is outside the years 1 to 9999 in UTC") from None


class ScoreIn(Strict):
    """A person's recent activity, in time order; the newest hour is scored against the hours before it."""

    user_id: Id
    events: list[ActivityIn] = Field(min_length=1, max_length=MAX_EVENTS)

    def to_proto(self, tenant_id: str) -> anomaly_pb2.ScoreEntityRequest:
        envelopes = [new_envelope(tenant_id, e.UserActivity(
            user_id=self.user_id, action=ev.action, resource=ev.resource, count=ev.count, ip=ev.ip, device=ev.device,
            session_id=ev.session_id), producer="gateway", occurred_at=ev.occurred_at, event_id=ev.event_id)
            for ev in self.events]
        return anomaly_pb2.ScoreEntityRequest(tenant_id=tenant_id, user_id=self.user_id, events=envelopes)


class AnomalyScore(BaseModel):
    user_id: str
    score: float = Field(description="the ensemble's margin over the alert threshold (>= 0: an alert)")
    components: list[Reason] = Field(description="each detector's per-tenant normalised score")
    provenance: Provenance

    @classmethod
    def from_proto(cls, response: anomaly_pb2.ScoreEntityResponse) -> AnomalyScore:
        p = response.prediction
        return cls(user_id=p.user_id, score=p.score, components=[reason(r) for r in p.components],
                   provenance=provenance(p.provenance))


def _at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, tz=UTC)


class Incident(BaseModel):
    incident_id: str
    entity_id: str = Field(description="the person the alerts are about")
    severity: SeverityName
    status: Literal["open", "acknowledged", "resolved"]
    rules: list[str] = Field(description="the rules that fired")
    alerts: int
    suppressed: int = Field(description="repeats inside the cooldown, folded into this incident")
    opened_at: datetime
    last_alert_at: datetime

    @classmethod
    def from_proto(cls, inc: anomaly_pb2.Incident) -> Incident:
        status = inc.status if inc.status in ("open", "acknowledged", "resolved") else "open"
        return cls(incident_id=inc.incident_id, entity_id=inc.entity_id, severity=_SEVERITY.get(inc.severity,
                   "unspecified"), status=status, rules=list(inc.rules),  # type: ignore[arg-type]
                   alerts=inc.alerts, suppressed=inc.suppressed, opened_at=_at(inc.opened_at_unix),
                   last_alert_at=_at(inc.last_alert_at_unix))


class IncidentPage(BaseModel):
    items: list[Incident]

    @classmethod
    def from_proto(cls, response: anomaly_pb2.ListIncidentsResponse) -> IncidentPage:
        return cls(items=[Incident.from_proto(i) for i in response.incidents])


class RulesIn(Strict):
    """The tenant's new alert rules (the format of GET's `rules_yaml`), made against `expected_version`."""

    rules_yaml: str = Field(min_length=1, max_length=MAX_RULES_BYTES, description="the rules file (YAML)")
    expected_version: int = Field(ge=0, le=2**63 - 1, description="the version this change was made against "
                                  "(GET's `version`; 0: the defaults); another one answers 409")

    def to_proto(self, tenant_id: str, actor: str) -> anomaly_pb2.PutRulesRequest:
        return anomaly_pb2.PutRulesRequest(tenant_id=tenant_id, rules_yaml=self.rules_yaml,
                                           expected_version=self.expected_version, actor=actor)


class Rules(BaseModel):
    rules_yaml: str
    version: int = Field(description="0: the built-in defaults (the tenant never set its own)")
    updated_by: str = Field(description="the client that made the last change ('' for the defaults)")
    updated_at: datetime | None

    @classmethod
    def from_proto(cls, response: anomaly_pb2.RulesResponse) -> Rules:
        return cls(rules_yaml=response.rules_yaml, version=response.version, updated_by=response.updated_by,
                   updated_at=_at(response.updated_at_unix) if response.updated_at_unix else None)
