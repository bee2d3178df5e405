"""/v1/automation/suggestions: suggested automations, their approval, and the protobuf conversions."""

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
