"""/v1/automation/suggestions and /v1/automation/analytics: suggested automations, their approval, the weekly
analytics, and the protobuf conversions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field
from sunday.ml.v1 import automation_pb2, events_pb2

from gateway.schemas.common import Provenance, Strict, provenance

Status = Literal["suggested", "approved", "rejected", "expired", "invalid", "unspecified"]
_STATUSES = {"suggested", "approved", "rejected", "expired", "invalid"}
MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Rule(BaseModel):
    trigger: str = Field(description='the trigger and its condition, e.g. "task_status_changed to_status=done"')
    actions: list[str] = Field(description='the steps, "action:detail"')


class Suggestion(BaseModel):
    suggestion_id: str
    kind: str
    user_id: str = Field(description="the person whose repeated manual workflow it automates")
    title: str
    body: str
    rule: Rule
    status: Status
    decided_by: str = Field(description="the client that approved or rejected it; empty while undecided")
    reason: str = Field(description="why it was rejected or expired")
    support: int = Field(description="trigger occurrences followed by the steps")
    confidence: float = Field(description="share of the trigger's occurrences followed by the steps")
    template_id: str = Field(description="closest automation template, or empty")
    provenance: Provenance

    @classmethod
    def from_proto(cls, s: events_pb2.Suggestion) -> Suggestion:
        status: Status = s.status if s.status in _STATUSES else "unspecified"  # type: ignore[assignment]
        return cls(suggestion_id=s.suggestion_id, kind=s.kind, user_id=s.user_id, title=s.title, body=s.body,
                   rule=Rule(trigger=s.rule.trigger, actions=list(s.rule.actions)), status=status,
                   decided_by=s.decided_by, reason=s.reason, support=s.support, confidence=s.confidence,
                   template_id=s.template_id, provenance=provenance(s.provenance))


class SuggestionPage(BaseModel):
    items: list[Suggestion] = Field(description="awaiting a decision, oldest first")

    @classmethod
    def from_proto(cls, response: automation_pb2.ListSuggestionsResponse) -> SuggestionPage:
        return cls(items=[Suggestion.from_proto(s) for s in response.suggestions])


class DecisionIn(Strict):
    """Optional: why (kept in the audit trail). The decider is always the calling client."""

    reason: str = Field(default="", max_length=1_000)

    def to_proto(self, tenant_id: str, suggestion_id: str, decided_by: str) -> automation_pb2.DecisionRequest:
        return automation_pb2.DecisionRequest(tenant_id=tenant_id, suggestion_id=suggestion_id,
                                              decided_by=decided_by, reason=self.reason)


MAX_WEEKS = 52
DEFAULT_WEEKS = 4


class WeekAnalytics(BaseModel):
    week_start: str = Field(description='the ISO week\'s Monday (UTC), "YYYY-MM-DD"')
    iso_week: str = Field(description='e.g. "2026-W02"')
    shown: int = Field(description="suggestions offered that week (those that passed validation)")
    accepted: int = Field(description="suggestions approved that week")
    rejected: int = Field(description="suggestions rejected that week")
    expired: int = Field(description="suggestions nobody decided on in time, expired that week")
    actions_saved_estimate: float = Field(description="manual actions per week that the automations approved "
                                                      "that week are estimated to save (dry-run firings x steps)")

    @classmethod
    def from_proto(cls, w: automation_pb2.WeekAnalytics) -> WeekAnalytics:
        return cls(week_start=w.week_start, iso_week=w.iso_week, shown=w.shown, accepted=w.accepted,
                   rejected=w.rejected, expired=w.expired, actions_saved_estimate=w.actions_saved_estimate)


class Analytics(BaseModel):
    weeks: list[WeekAnalytics] = Field(description="the last weeks, oldest first, ending with the current one")

    @classmethod
    def from_proto(cls, response: automation_pb2.AnalyticsResponse) -> Analytics:
        return cls(weeks=[WeekAnalytics.from_proto(w) for w in response.weeks])
