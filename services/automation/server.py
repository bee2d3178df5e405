"""gRPC adapter: AutomationService (ListSuggestions, Approve, Reject, Validate, Analytics) -> the approval store
and the validator. Thin: domain errors only (the mesh's interceptor maps them to status codes); an illegal
transition is InvalidArgument with the status the suggestion is in."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from sunday.ml.v1 import automation_pb2 as api
from sunday.ml.v1 import automation_pb2_grpc as api_grpc
from sunday.ml.v1 import events_pb2 as pb

from mesh.errors import FailedPrecondition, InvalidArgument, NotFound
from mesh.serving import ServiceBinding, bind
from services.automation.approval import IllegalTransition, SuggestionRecord, UnknownSuggestion, weeks_ending
from services.automation.engine import suggestion_envelope
from services.automation.handlers import AutomationHandler
from services.automation.validate import AutomationSpec, Validator, Verdict

SERVICE_NAME = "sunday.ml.v1.AutomationService"
TRIGGERS = ("task_created", "task_status_changed", "task_assigned")
DEFAULT_WEEKS = 4
MAX_WEEKS = 52
Ctx = Any
"""grpc.aio.ServicerContext (unused: errors are domain errors)."""


def suggestion_of(record: SuggestionRecord) -> pb.Suggestion:
    return suggestion_envelope(record).suggestion


def verdict_response(verdict: Verdict, weeks: float) -> api.ValidateResponse:
    run = verdict.dry_run
    return api.ValidateResponse(
        ok=verdict.ok, reasons=[api.ValidationReason(rule=r.rule, message=r.message) for r in verdict.reasons],
        dry_run=api.DryRunReport(firings=run.firings, tasks=run.tasks, peak_items_per_day=run.peak_items_per_day,
                                 changes=run.changes, followed_by_hand=run.followed_by_hand, sample=list(run.sample),
                                 weeks=weeks))


class AutomationServicer(api_grpc.AutomationServiceServicer):
    def __init__(self, handler: AutomationHandler, validator: Validator,
                 clock: Callable[[], float] = time.time) -> None:
        self._handler = handler
        self._validator = validator
        self._clock = clock

    async def ListSuggestions(self, request: api.ListSuggestionsRequest, context: Ctx) -> api.ListSuggestionsResponse:
        if not request.tenant_id:
            raise InvalidArgument("tenant_id is required")
        records = await asyncio.to_thread(self._handler.approvals.open, request.tenant_id, request.user_id,
                                          int(request.limit) or 50)
        return api.ListSuggestionsResponse(suggestions=[suggestion_of(r) for r in records])

    async def Approve(self, request: api.DecisionRequest, context: Ctx) -> api.DecisionResponse:
        return await asyncio.to_thread(self._decide, request, "approved")

    async def Reject(self, request: api.DecisionRequest, context: Ctx) -> api.DecisionResponse:
        return await asyncio.to_thread(self._decide, request, "rejected")

    def _decide(self, request: api.DecisionRequest, to: str) -> api.DecisionResponse:
        if not request.tenant_id or not request.suggestion_id or not request.decided_by:
            raise InvalidArgument("tenant_id, suggestion_id and decided_by are required")
        try:
            moved = self._handler.approvals.transition(request.tenant_id, request.suggestion_id, to, time.time(),
                                                       by=request.decided_by, reason=request.reason)
        except UnknownSuggestion as error:
            raise NotFound(str(error.args[0])) from error
        except IllegalTransition as error:  # the suggestion's state forbids it: a conflict, not bad input
            raise FailedPrecondition(str(error)) from error
        self._handler.announce(moved.record)  # the audit event; a retried decision re-sends the same id
        return api.DecisionResponse(suggestion=suggestion_of(moved.record))

    async def Validate(self, request: api.ValidateRequest, context: Ctx) -> api.ValidateResponse:
        if not request.tenant_id or not request.actor_id or not request.steps:
            raise InvalidArgument("tenant_id, actor_id and at least one step are required")
        if request.trigger_type not in TRIGGERS:
            raise InvalidArgument(f"trigger_type must be one of {list(TRIGGERS)}")
        spec = AutomationSpec(request.tenant_id, request.actor_id, request.trigger_type, request.condition,
                              tuple(request.steps), tuple(request.project_ids), request.automation_id or "candidate")
        verdict = await asyncio.to_thread(self._validator.validate, spec)
        return verdict_response(verdict, self._validator.config.dry_run_weeks)


    async def Analytics(self, request: api.AnalyticsRequest, context: Ctx) -> api.AnalyticsResponse:
        if not request.tenant_id:
            raise InvalidArgument("tenant_id is required")
        if request.weeks > MAX_WEEKS:
            raise InvalidArgument(f"weeks must be between 1 and {MAX_WEEKS} (0: {DEFAULT_WEEKS}), got {request.weeks}")
        weeks = weeks_ending(self._clock(), int(request.weeks) or DEFAULT_WEEKS)
        stored = await asyncio.to_thread(self._handler.approvals.analytics, request.tenant_id, [k for k, _ in weeks])
        return api.AnalyticsResponse(weeks=[week_analytics(key, start.isoformat(), stored.get(key, {}))
                                            for key, start in weeks])


def week_analytics(iso_week: str, week_start: str, counts: dict[str, float]) -> api.WeekAnalytics:
    """One week of :meth:`ApprovalStore.analytics` (approved -> accepted; a missing counter is 0)."""
    return api.WeekAnalytics(week_start=week_start, iso_week=iso_week, shown=int(counts.get("shown", 0)),
                             accepted=int(counts.get("approved", 0)), rejected=int(counts.get("rejected", 0)),
                             expired=int(counts.get("expired", 0)),
                             actions_saved_estimate=float(counts.get("actions_saved_per_week", 0.0)))


def binding(handler: AutomationHandler, validator: Validator,
            clock: Callable[[], float] = time.time) -> ServiceBinding:
    return bind(SERVICE_NAME, api_grpc.add_AutomationServiceServicer_to_server,
                AutomationServicer(handler, validator, clock))
