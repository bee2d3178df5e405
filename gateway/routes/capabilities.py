"""Capability routes over the services' gRPC APIs: thin adapters, the tenant always from the credential."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from sunday.ml.v1 import anomaly_pb2, automation_pb2, nlp_pb2, personalization_pb2, timeline_pb2

from gateway.backends import not_deployed
from gateway.context import GatewayContext
from gateway.deps import (
    AnomalyAdmin,
    AnomalyReader,
    AnomalyWriter,
    AssignmentCaller,
    AutomationReader,
    AutomationWriter,
    Context,
    NlpCaller,
    PersonalizationCaller,
    TimelineCaller,
    scoped,
)
from gateway.problems import PROBLEM_MEDIA_TYPE, PROBLEM_RESPONSES, Problem, ProblemError
from gateway.schemas import anomaly as anom
from gateway.schemas import automation as auto
from gateway.schemas import nlp
from gateway.schemas import personalization as perso
from gateway.schemas.assignment import Ranking, RankRequest, ranking_json
from gateway.schemas.common import Id
from gateway.schemas.timeline import ProjectTimeline, TimelinePrediction

_PROBLEM = {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES, 404: {**_PROBLEM, "description": "not found in the caller's tenant"},
    502: {**_PROBLEM, "description": "the service failed"},
    503: {**_PROBLEM, "description": "the service is unreachable; retry after Retry-After"},
}

assignment = APIRouter(prefix="/v1/assignment", tags=["assignment"], responses=RESPONSES)
timeline = APIRouter(prefix="/v1/timeline", tags=["timeline"], responses=RESPONSES)
nlp_router = APIRouter(prefix="/v1/nlp", tags=["nlp"], responses=RESPONSES)
personalization = APIRouter(prefix="/v1/personalization", tags=["personalization"], responses=RESPONSES)
automation = APIRouter(prefix="/v1/automation", tags=["automation"], responses=RESPONSES)
anomaly = APIRouter(prefix="/v1/anomaly", tags=["anomaly"], responses=RESPONSES)
SERVED = ("assignment", "timeline", "nlp", "personalization", "automation", "anomaly")
"""Capabilities with routes of their own; the others get :func:`pending_router`."""

S = TypeVar("S")


def _deployed(ctx: GatewayContext, capability: str, stub: S | None) -> S:
    if stub is None:
        raise not_deployed(capability, ctx.settings.backends.retry_after_s)
    return stub


@assignment.post("/rank", summary="Rank the people of the caller's tenant for a task", response_model=Ranking)
async def rank_assignees(body: RankRequest, caller: AssignmentCaller, ctx: Context, limits: Response) -> Response:
    stub = ctx.backends.assignment
    if stub is None:
        raise not_deployed("assignment", ctx.settings.backends.retry_after_s)
    response = await ctx.backends.call("assignment", "task", stub.RankAssignees, body.to_proto(caller.tenant_id))
    # The hottest route: serialised straight from the protobuf (no models built and validated again);
    # a Response returned as is carries none of the dependencies' headers, so the limits' are copied.
    return Response(ranking_json(response), media_type="application/json", headers=limits.headers)


@timeline.get("/tasks/{task_id}", summary="Remaining duration and completion date of a task")
async def predict_task(task_id: Annotated[Id, Path()], caller: TimelineCaller, ctx: Context) -> TimelinePrediction:
    stub = ctx.backends.timeline
    if stub is None:
        raise not_deployed("timeline", ctx.settings.backends.retry_after_s)
    request = timeline_pb2.PredictTaskRequest(tenant_id=caller.tenant_id, task_id=task_id)
    response = await ctx.backends.call("timeline", "task", stub.PredictTask, request)
    return TimelinePrediction.from_proto(response.prediction)


@timeline.get("/projects/{project_id}", summary="Project and milestone completion (Monte-Carlo)")
async def predict_project(project_id: Annotated[Id, Path()], caller: TimelineCaller, ctx: Context,
                          simulations: Annotated[int, Query(ge=0, le=100_000)] = 0) -> ProjectTimeline:
    stub = ctx.backends.timeline
    if stub is None:
        raise not_deployed("timeline", ctx.settings.backends.retry_after_s)
    request = timeline_pb2.PredictProjectRequest(tenant_id=caller.tenant_id, project_id=project_id,
                                                 simulations=simulations)
    return ProjectTimeline.from_proto(await ctx.backends.call("timeline", "project", stub.PredictProject, request))


# --- nlp ----------------------------------------------------------------------------------------------
@nlp_router.post("/search", summary="Hybrid (BM25 + embedding) search over the caller's indexed tasks")
async def search(body: nlp.SearchIn, caller: NlpCaller, ctx: Context) -> nlp.SearchResults:
    stub = _deployed(ctx, "nlp", ctx.backends.nlp)
    return nlp.SearchResults.from_proto(await ctx.backends.call("nlp", "task", stub.Search,
                                                                body.to_proto(caller.tenant_id)))


@nlp_router.get("/tasks/{task_id}/similar", summary="The caller's tasks most similar to one of its tasks")
async def similar_tasks(task_id: Annotated[nlp.NlpId, Path()], caller: NlpCaller, ctx: Context,
                        k: Annotated[int, Query(ge=1, le=nlp.MAX_K)] = nlp.DEFAULT_K) -> nlp.SearchResults:
    stub = _deployed(ctx, "nlp", ctx.backends.nlp)
    request = nlp_pb2.SimilarTasksRequest(tenant_id=caller.tenant_id, task_id=task_id, k=k)
    return nlp.SearchResults.from_proto(await ctx.backends.call("nlp", "task", stub.SimilarTasks, request))


@nlp_router.post("/sentiment", summary="Sentiment (negative, neutral, positive) of up to 256 texts")
async def sentiment(body: nlp.SentimentIn, caller: NlpCaller, ctx: Context) -> nlp.Sentiments:
    stub = _deployed(ctx, "nlp", ctx.backends.nlp)
    return nlp.Sentiments.from_proto(await ctx.backends.call("nlp", "text", stub.Sentiment,
                                                             body.to_proto(caller.tenant_id)))


@nlp_router.post("/summaries", summary="Summary and action items of a meeting transcript")
async def summarize(body: nlp.SummaryIn, caller: NlpCaller, ctx: Context) -> nlp.Summary:
    stub = _deployed(ctx, "nlp", ctx.backends.nlp)
    return nlp.Summary.from_proto(await ctx.backends.call("nlp", "project", stub.Summarize,
                                                          body.to_proto(caller.tenant_id)))


@nlp_router.post("/drafts", summary="A task description drafted from the title and the project's similar tasks")
async def draft_description(body: nlp.DraftIn, caller: NlpCaller, ctx: Context) -> nlp.Draft:
    stub = _deployed(ctx, "nlp", ctx.backends.nlp)
    return nlp.Draft.from_proto(await ctx.backends.call("nlp", "project", stub.DraftDescription,
                                                        body.to_proto(caller.tenant_id)))


# --- personalization ------------------------------------------------------------------------------------
@personalization.get("/recommendations", summary="What a person of the caller's tenant should look at next")
async def recommend(user_id: Annotated[Id, Query()], caller: PersonalizationCaller, ctx: Context,
                    k: Annotated[int, Query(ge=1, le=perso.MAX_K)] = perso.DEFAULT_K,
                    surface: Annotated[str, Query(pattern=perso.SURFACE)] = "for_you",
                    include_closed: bool = False,
                    request_id: Annotated[Id | None, Query(description="the same id gets the same suggestion "
                                                                       "and slate (default: one per request)")] = None,
                    ) -> perso.Recommendations:
    stub = _deployed(ctx, "personalization", ctx.backends.personalization)
    request = personalization_pb2.RecommendRequest(
        tenant_id=caller.tenant_id, user_id=user_id, k=k, surface=surface, include_closed=include_closed,
        request_id=request_id or uuid.uuid4().hex)  # gateway retries of this request get the same slate
    return perso.Recommendations.from_proto(await ctx.backends.call("personalization", "person", stub.Recommend,
                                                                    request))


# --- automation -----------------------------------------------------------------------------------------
@automation.get("/suggestions", summary="Suggested automations of the caller's tenant awaiting a decision")
async def list_suggestions(caller: AutomationReader, ctx: Context,
                           user_id: Annotated[Id | None, Query(description="only this person's")] = None,
                           limit: Annotated[int, Query(ge=1, le=auto.MAX_LIMIT)] = auto.DEFAULT_LIMIT,
                           ) -> auto.SuggestionPage:
    stub = _deployed(ctx, "automation", ctx.backends.automation)
    request = automation_pb2.ListSuggestionsRequest(tenant_id=caller.tenant_id, user_id=user_id or "", limit=limit)
    return auto.SuggestionPage.from_proto(await ctx.backends.call("automation", "suggestion", stub.ListSuggestions,
                                                                  request))


@automation.post("/suggestions/{suggestion_id}/approve",
                 summary="Approve a suggested automation (the approver is the calling client)",
                 description="suggested -> approved. Repeating an approve returns the approved suggestion "
                             "unchanged; approving a rejected or expired one is refused (409).",
                 responses={409: {**_PROBLEM, "description": "the suggestion is no longer suggested"}})
async def approve_suggestion(suggestion_id: Annotated[Id, Path()], caller: AutomationWriter, ctx: Context,
                             body: Annotated[auto.DecisionIn | None, Body()] = None) -> auto.Suggestion:
    return await _decide(ctx, caller.tenant_id, caller.client_id, suggestion_id, body, "Approve")


@automation.post("/suggestions/{suggestion_id}/reject",
                 summary="Reject a suggested automation (not suggested again to that person for a cool-down)",
                 description="suggested -> rejected. Repeating a reject returns the rejected suggestion "
                             "unchanged; rejecting an approved or expired one is refused (409).",
                 responses={409: {**_PROBLEM, "description": "the suggestion is no longer suggested"}})
async def reject_suggestion(suggestion_id: Annotated[Id, Path()], caller: AutomationWriter, ctx: Context,
                            body: Annotated[auto.DecisionIn | None, Body()] = None) -> auto.Suggestion:
    return await _decide(ctx, caller.tenant_id, caller.client_id, suggestion_id, body, "Reject")


async def _decide(ctx: GatewayContext, tenant_id: str, client_id: str, suggestion_id: str,
                  body: auto.DecisionIn | None, rpc: str) -> auto.Suggestion:
    stub = _deployed(ctx, "automation", ctx.backends.automation)
    request = (body or auto.DecisionIn()).to_proto(tenant_id, suggestion_id, decided_by=client_id)
    method = stub.Approve if rpc == "Approve" else stub.Reject
    response = await ctx.backends.call("automation", "suggestion", method, request)
    return auto.Suggestion.from_proto(response.suggestion)


@automation.get("/analytics", summary="Weekly analytics of the caller's suggested automations",
                description="Per ISO week (UTC), oldest first, ending with the current week: suggestions shown, "
                            "accepted, rejected and expired, and the manual actions per week that the automations "
                            "accepted that week are estimated to save. A week without activity is all zeros.")
async def automation_analytics(caller: AutomationReader, ctx: Context,
                               weeks: Annotated[int, Query(ge=1, le=auto.MAX_WEEKS,
                                                           description="how many weeks")] = auto.DEFAULT_WEEKS,
                               ) -> auto.Analytics:
    stub = _deployed(ctx, "automation", ctx.backends.automation)
    request = automation_pb2.AnalyticsRequest(tenant_id=caller.tenant_id, weeks=weeks)
    return auto.Analytics.from_proto(await ctx.backends.call("automation", "analytics", stub.Analytics, request))


# --- anomaly --------------------------------------------------------------------------------------------
@anomaly.post("/scores", summary="Score a person's newest hour of activity against the hours before it",
              description="The events are the person's recent activity in the caller's tenant; the answer is the "
                          "ensemble's margin over the alert threshold and each detector's part. 503 while no "
                          "anomaly model has been promoted.")
async def score_entity(body: anom.ScoreIn, caller: AnomalyReader, ctx: Context) -> anom.AnomalyScore:
    stub = _deployed(ctx, "anomaly", ctx.backends.anomaly)
    return anom.AnomalyScore.from_proto(await ctx.backends.call("anomaly", "person", stub.ScoreEntity,
                                                                body.to_proto(caller.tenant_id)))


@anomaly.get("/incidents", summary="The caller's incidents (open and acknowledged; resolved ones on request)")
async def list_incidents(caller: AnomalyReader, ctx: Context,
                         include_resolved: Annotated[bool, Query(description="resolved ones too")] = False,
                         ) -> anom.IncidentPage:
    stub = _deployed(ctx, "anomaly", ctx.backends.anomaly)
    request = anomaly_pb2.ListIncidentsRequest(tenant_id=caller.tenant_id, include_resolved=include_resolved)
    return anom.IncidentPage.from_proto(await ctx.backends.call("anomaly", "incident", stub.ListIncidents, request))


@anomaly.post("/incidents/{incident_id}/acknowledge", summary="Acknowledge an incident (someone is on it)")
async def acknowledge_incident(incident_id: Annotated[Id, Path()], caller: AnomalyWriter,
                               ctx: Context) -> anom.Incident:
    stub = _deployed(ctx, "anomaly", ctx.backends.anomaly)
    request = anomaly_pb2.IncidentActionRequest(tenant_id=caller.tenant_id, incident_id=incident_id)
    return anom.Incident.from_proto((await ctx.backends.call("anomaly", "incident", stub.Acknowledge,
                                                             request)).incident)


@anomaly.post("/incidents/{incident_id}/resolve", summary="Resolve an incident")
async def resolve_incident(incident_id: Annotated[Id, Path()], caller: AnomalyWriter, ctx: Context) -> anom.Incident:
    stub = _deployed(ctx, "anomaly", ctx.backends.anomaly)
    request = anomaly_pb2.IncidentActionRequest(tenant_id=caller.tenant_id, incident_id=incident_id)
    return anom.Incident.from_proto((await ctx.backends.call("anomaly", "incident", stub.Resolve, request)).incident)


@anomaly.get("/rules", summary="The caller's alert rules (the built-in defaults, version 0, until it sets its own)")
async def get_rules(caller: AnomalyAdmin, ctx: Context) -> anom.Rules:
    stub = _deployed(ctx, "anomaly", ctx.backends.anomaly)
    request = anomaly_pb2.GetRulesRequest(tenant_id=caller.tenant_id)
    return anom.Rules.from_proto(await ctx.backends.call("anomaly", "rules", stub.GetRules, request))


@anomaly.put("/rules", summary="Replace the caller's alert rules (audited by the anomaly service)",
             description="Validated by the service: a bad rule file answers 400 naming the field (e.g. "
                         "`rules_yaml: invalid rules: rules.0.static.min_events: ...`); an `expected_version` "
                         "that is not the current one answers 409 and changes nothing. The change is recorded "
                         "with the calling client as its author.",
             responses={400: {**_PROBLEM, "description": "the rules are invalid (the detail names the field)"},
                        409: {**_PROBLEM, "description": "the rules changed since `expected_version`"}})
async def put_rules(body: anom.RulesIn, caller: AnomalyAdmin, ctx: Context) -> anom.Rules:
    stub = _deployed(ctx, "anomaly", ctx.backends.anomaly)
    try:
        response = await ctx.backends.call("anomaly", "rules", stub.PutRules,
                                           body.to_proto(caller.tenant_id, actor=caller.client_id))
    except ProblemError as problem:
        if problem.status == 422:  # the service's InvalidArgument: a bad rule file, its field named
            raise ProblemError(400, "invalid-rules", "Invalid rules", problem.detail) from None
        raise
    return anom.Rules.from_proto(response)


def pending_router(capability: str) -> APIRouter:
    """A capability whose service has no gRPC API yet: authenticated, scoped, and 503 until it lands."""
    router = APIRouter(prefix=f"/v1/{capability}", tags=[capability], responses=RESPONSES)

    async def predict(ctx: Context, _body: Annotated[dict[str, Any], Body()]) -> None:
        raise not_deployed(capability, ctx.settings.backends.retry_after_s)

    # The scope check is a route dependency: annotations of this closure cannot name `capability`.
    router.add_api_route("/predict", predict, methods=["POST"], status_code=200, response_model=None,
                         dependencies=[Depends(scoped(f"{capability}:read"))],
                         summary=f"{capability} predictions (503 until the service is reachable)",
                         operation_id=f"predict_{capability}")
    return router
