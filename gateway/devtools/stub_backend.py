"""A small real gRPC server implementing the services' APIs (assignment, timeline, nlp, personalization,
automation, anomaly) with canned answers.

For the SDK tests, the gateway benchmark and local development, where the real services (and their
models) are not needed: the point is the gateway in front. Tenant-aware like the real ones: a task of
another tenant is NOT_FOUND. Run: ``python -m gateway.devtools.stub_backend --port 50051``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sunday.ml.v1 import (
    anomaly_pb2,
    anomaly_pb2_grpc,
    assignment_pb2,
    assignment_pb2_grpc,
    automation_pb2,
    automation_pb2_grpc,
    common_pb2,
    events_pb2,
    nlp_pb2,
    nlp_pb2_grpc,
    personalization_pb2,
    personalization_pb2_grpc,
    timeline_pb2,
    timeline_pb2_grpc,
)

from mesh.telemetry import current_trace_id

# tenant -> task ids it owns (and the project of each); everything else is NOT_FOUND.
TASKS: dict[str, dict[str, str]] = {"acme": {"task-1": "proj-1", "task-2": "proj-1"},
                                    "globex": {"task-9": "proj-9"}}
PEOPLE: dict[str, list[str]] = {"acme": ["ada", "bob", "cy", "dee", "eve", "fay"], "globex": ["gil", "hal"]}


def _provenance(model: str) -> common_pb2.Provenance:
    now = Timestamp()
    now.GetCurrentTime()
    return common_pb2.Provenance(model_name=model, model_version="stub-1", trace_id=current_trace_id(),
                                 predicted_at=now)


class StubAssignment(assignment_pb2_grpc.AssignmentServiceServicer):
    async def RankAssignees(self, request: assignment_pb2.RankAssigneesRequest,
                            context: grpc.aio.ServicerContext) -> assignment_pb2.RankAssigneesResponse:
        tasks = TASKS.get(request.tenant_id, {})
        if request.WhichOneof("task") == "task_id":
            if request.task_id not in tasks:
                await context.abort(grpc.StatusCode.NOT_FOUND, "task not found")
            task_id, project_id = request.task_id, tasks[request.task_id]
        else:
            task_id, project_id = request.payload.task_id, request.payload.project_id
        people = list(request.candidate_ids) or PEOPLE.get(request.tenant_id, [])
        k = request.k or 5
        candidates = [events_pb2.RankedCandidate(
            user_id=p, score=round(1.0 - i / (len(people) + 1), 4),
            reasons=[common_pb2.Reason(feature="skill_match", contribution=0.5, description="stub")])
            for i, p in enumerate(people[:k])]
        return assignment_pb2.RankAssigneesResponse(prediction=events_pb2.AssignmentPrediction(
            task_id=task_id, project_id=project_id, candidates=candidates, provenance=_provenance("assignment")))


def _timeline(kind: events_pb2.EntityKind.ValueType, entity: str, project: str) -> events_pb2.TimelinePrediction:
    done = Timestamp(seconds=int(time.time()) + 3 * 86400)
    return events_pb2.TimelinePrediction(entity_kind=kind, entity_id=entity, project_id=project,
                                         remaining_hours_p10=4, remaining_hours_p50=8, remaining_hours_p90=16,
                                         completion_p10=done, completion_p50=done, completion_p90=done,
                                         deadline_miss_probability=0.25, provenance=_provenance("timeline"))


class StubTimeline(timeline_pb2_grpc.TimelineServiceServicer):
    async def PredictTask(self, request: timeline_pb2.PredictTaskRequest,
                          context: grpc.aio.ServicerContext) -> timeline_pb2.PredictTaskResponse:
        tasks = TASKS.get(request.tenant_id, {})
        if request.task_id not in tasks:
            await context.abort(grpc.StatusCode.NOT_FOUND, "task not found")
        return timeline_pb2.PredictTaskResponse(
            prediction=_timeline(events_pb2.ENTITY_KIND_TASK, request.task_id, tasks[request.task_id]))

    async def PredictProject(self, request: timeline_pb2.PredictProjectRequest,
                             context: grpc.aio.ServicerContext) -> timeline_pb2.PredictProjectResponse:
        if request.project_id not in set(TASKS.get(request.tenant_id, {}).values()):
            await context.abort(grpc.StatusCode.NOT_FOUND, "project not found")
        return timeline_pb2.PredictProjectResponse(
            project=_timeline(events_pb2.ENTITY_KIND_PROJECT, request.project_id, request.project_id),
            milestones=[_timeline(events_pb2.ENTITY_KIND_MILESTONE, "ms-1", request.project_id)])


TITLES = {"task-1": "Fix the login bug on SSO", "task-2": "Add dark mode to settings", "task-9": "Quarterly report"}


class StubNlp(nlp_pb2_grpc.NlpServiceServicer):
    def _hits(self, tenant: str, exclude: str = "", project: str = "") -> list[nlp_pb2.SearchHit]:
        tasks = [(t, p) for t, p in TASKS.get(tenant, {}).items() if t != exclude and (not project or p == project)]
        return [nlp_pb2.SearchHit(item_id=t, kind="task", project_id=p, title=TITLES.get(t, t),
                                  score=round(0.9 - 0.1 * i, 4), dense_score=0.8, lexical_score=1.0)
                for i, (t, p) in enumerate(tasks)]

    async def Search(self, request: nlp_pb2.SearchRequest,
                     context: grpc.aio.ServicerContext) -> nlp_pb2.SearchResponse:
        if not request.query.strip():
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "query is empty")
        hits = self._hits(request.tenant_id, project=request.filters.get("project_id", ""))
        return nlp_pb2.SearchResponse(hits=hits[:request.k or 10], provenance=_provenance("nlp-embedder"))

    async def SimilarTasks(self, request: nlp_pb2.SimilarTasksRequest,
                           context: grpc.aio.ServicerContext) -> nlp_pb2.SearchResponse:
        if request.task_id not in TASKS.get(request.tenant_id, {}):
            await context.abort(grpc.StatusCode.NOT_FOUND, "task not indexed")
        hits = self._hits(request.tenant_id, exclude=request.task_id)
        return nlp_pb2.SearchResponse(hits=hits[:request.k or 10], provenance=_provenance("nlp-embedder"))

    async def Sentiment(self, request: nlp_pb2.SentimentRequest,
                        context: grpc.aio.ServicerContext) -> nlp_pb2.SentimentResponse:
        def label(text: str) -> str:
            lowered = text.lower()
            return "negative" if "broken" in lowered else "positive" if "great" in lowered else "neutral"

        return nlp_pb2.SentimentResponse(results=[nlp_pb2.SentimentResult(label=label(t), score=0.9)
                                                  for t in request.texts], provenance=_provenance("nlp-sentiment"))

    async def Summarize(self, request: nlp_pb2.SummarizeRequest,
                        context: grpc.aio.ServicerContext) -> nlp_pb2.SummarizeResponse:
        first = request.utterances[0] if request.utterances else events_pb2.Utterance()
        return nlp_pb2.SummarizeResponse(
            summary=f"{request.title or 'Meeting'}: {len(request.utterances)} utterances.", provider="local",
            action_items=[nlp_pb2.ActionItem(text=first.text, owner=first.speaker, due="",
                                             linked_task_id=next(iter(TASKS.get(request.tenant_id, {})), ""))],
            provenance=_provenance("nlp-local-summarizer"))

    async def DraftDescription(self, request: nlp_pb2.DraftDescriptionRequest,
                               context: grpc.aio.ServicerContext) -> nlp_pb2.DraftDescriptionResponse:
        hits = self._hits(request.tenant_id, project=request.project_id)
        return nlp_pb2.DraftDescriptionResponse(description=f"## {request.title}\n\nSteps to reproduce: ...",
                                                similar_task_ids=[h.item_id for h in hits], provider="local",
                                                provenance=_provenance("task_description_draft@1"))


    async def Embed(self, request: nlp_pb2.EmbedRequest, context: grpc.aio.ServicerContext) -> nlp_pb2.EmbedResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the stub backend")
        raise AssertionError  # abort raises

    async def EstimateEffort(self, request: nlp_pb2.EstimateEffortRequest,
                             context: grpc.aio.ServicerContext) -> nlp_pb2.EstimateEffortResponse:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "effort from text is not served by nlp yet")
        raise AssertionError


class StubPersonalization(personalization_pb2_grpc.PersonalizationServiceServicer):
    async def Recommend(self, request: personalization_pb2.RecommendRequest,
                        context: grpc.aio.ServicerContext) -> personalization_pb2.RecommendResponse:
        if request.user_id not in PEOPLE.get(request.tenant_id, []):
            await context.abort(grpc.StatusCode.NOT_FOUND, "person not found")
        tasks = list(TASKS.get(request.tenant_id, {}))[:request.k or 5]
        return personalization_pb2.RecommendResponse(
            suggestion_id=f"rec-{request.request_id or 'x'}",
            prediction=events_pb2.PersonalizationPrediction(
                user_id=request.user_id, policy="hybrid", policy_version="stub-1", surface=request.surface or "for_you",
                items=[events_pb2.ScoredItem(item_id=t, score=round(1.0 - 0.1 * i, 4)) for i, t in enumerate(tasks)],
                provenance=_provenance("personalization")))


def _suggestions() -> dict[str, dict[str, events_pb2.Suggestion]]:
    def one(sid: str, user: str) -> events_pb2.Suggestion:
        return events_pb2.Suggestion(
            suggestion_id=sid, capability="automation", kind="automation_rule", user_id=user,
            title="When a bug is marked done, move it to the Done group",
            body="You did this by hand 9 times in the last 4 weeks.",
            rule=events_pb2.AutomationRule(trigger="task_status_changed to_status=done",
                                           actions=["move_item:group=done"]),
            status="suggested", support=9, confidence=0.9, provenance=_provenance("automation"))

    return {"acme": {"sug-1": one("sug-1", "ada"), "sug-2": one("sug-2", "bob")},
            "globex": {"sug-9": one("sug-9", "gil")}}


class StubAutomation(automation_pb2_grpc.AutomationServiceServicer):
    """The approval workflow in memory: suggested -> approved | rejected; a repeat is answered unchanged."""

    def __init__(self) -> None:
        self._suggestions = _suggestions()

    async def ListSuggestions(self, request: automation_pb2.ListSuggestionsRequest,
                              context: grpc.aio.ServicerContext) -> automation_pb2.ListSuggestionsResponse:
        found = [s for s in self._suggestions.get(request.tenant_id, {}).values()
                 if s.status == "suggested" and (not request.user_id or s.user_id == request.user_id)]
        return automation_pb2.ListSuggestionsResponse(suggestions=found[:request.limit or 50])

    async def _decide(self, request: automation_pb2.DecisionRequest, to: str,
                      context: grpc.aio.ServicerContext) -> automation_pb2.DecisionResponse:
        found = self._suggestions.get(request.tenant_id, {}).get(request.suggestion_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "suggestion not found")
        assert found is not None
        if found.status not in ("suggested", to):
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"suggestion {found.suggestion_id} is "
                                f"{found.status}: only a suggested one can become {to}")
        if found.status == "suggested":
            found.status, found.decided_by, found.reason = to, request.decided_by, request.reason
        return automation_pb2.DecisionResponse(suggestion=found)

    async def Approve(self, request: automation_pb2.DecisionRequest,
                      context: grpc.aio.ServicerContext) -> automation_pb2.DecisionResponse:
        return await self._decide(request, "approved", context)

    async def Reject(self, request: automation_pb2.DecisionRequest,
                     context: grpc.aio.ServicerContext) -> automation_pb2.DecisionResponse:
        return await self._decide(request, "rejected", context)

    async def Validate(self, request: automation_pb2.ValidateRequest,
                       context: grpc.aio.ServicerContext) -> automation_pb2.ValidateResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the stub backend")
        raise AssertionError

    async def Analytics(self, request: automation_pb2.AnalyticsRequest,
                        context: grpc.aio.ServicerContext) -> automation_pb2.AnalyticsResponse:
        """The last ``weeks`` ISO weeks, oldest first: canned counts for the current week (its decisions so far
        counted in), zeros before."""
        if request.weeks > 52:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "weeks must be between 1 and 52")
        today = datetime.datetime.now(datetime.UTC).date()
        monday = today - datetime.timedelta(days=today.weekday())
        found = list(self._suggestions.get(request.tenant_id, {}).values())
        weeks = []
        for back in range((request.weeks or 4) - 1, -1, -1):
            start = monday - datetime.timedelta(weeks=back)
            year, week, _ = start.isocalendar()
            now = back == 0
            weeks.append(automation_pb2.WeekAnalytics(
                week_start=start.isoformat(), iso_week=f"{year}-W{week:02d}", shown=len(found) if now else 0,
                accepted=sum(s.status == "approved" for s in found) if now else 0,
                rejected=sum(s.status == "rejected" for s in found) if now else 0,
                actions_saved_estimate=2.0 * sum(s.status == "approved" for s in found) if now else 0.0))
        return automation_pb2.AnalyticsResponse(weeks=weeks)


class StubAnomaly(anomaly_pb2_grpc.AnomalyServiceServicer):
    """Incidents and rules in memory, per tenant; another tenant's incident is NOT_FOUND; a stale rules
    version is FAILED_PRECONDITION and rules without a `rules:` key INVALID_ARGUMENT naming the field."""

    def __init__(self) -> None:
        now = int(time.time())
        self._incidents = {
            "acme": {"inc-1": anomaly_pb2.Incident(incident_id="inc-1", tenant_id="acme", entity_id="ada",
                                                   severity=events_pb2.SEVERITY_WARNING, status="open",
                                                   rules=["bulk_delete_burst"], alerts=2, opened_at_unix=now - 600,
                                                   last_alert_at_unix=now - 60)},
            "globex": {"inc-9": anomaly_pb2.Incident(incident_id="inc-9", tenant_id="globex", entity_id="gil",
                                                     severity=events_pb2.SEVERITY_CRITICAL, status="open",
                                                     rules=["unusual_activity"], alerts=1, opened_at_unix=now,
                                                     last_alert_at_unix=now)}}
        self._rules: dict[str, anomaly_pb2.RulesResponse] = {}

    async def ScoreEntity(self, request: anomaly_pb2.ScoreEntityRequest,
                          context: grpc.aio.ServicerContext) -> anomaly_pb2.ScoreEntityResponse:
        mine = [ev for ev in request.events if ev.tenant_id == request.tenant_id
                and ev.user_activity.user_id == request.user_id]
        if not mine:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "events: no user_activity of this tenant and user")
        bulk = sum(ev.user_activity.count for ev in mine if ev.user_activity.action == "bulk_delete")
        prediction = events_pb2.AnomalyPrediction(user_id=request.user_id, score=round(bulk / 10 - 1, 4),
                                                  provenance=_provenance("anomaly"))
        prediction.components.add(feature="isolation_forest_z", contribution=round(bulk / 10, 4))
        return anomaly_pb2.ScoreEntityResponse(prediction=prediction)

    async def ListIncidents(self, request: anomaly_pb2.ListIncidentsRequest,
                            context: grpc.aio.ServicerContext) -> anomaly_pb2.ListIncidentsResponse:
        found = [i for i in self._incidents.get(request.tenant_id, {}).values()
                 if request.include_resolved or i.status != "resolved"]
        return anomaly_pb2.ListIncidentsResponse(incidents=found)

    async def _set(self, request: anomaly_pb2.IncidentActionRequest, status: str,
                   context: grpc.aio.ServicerContext) -> anomaly_pb2.IncidentResponse:
        found = self._incidents.get(request.tenant_id, {}).get(request.incident_id)
        if found is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "incident not found")
        assert found is not None
        found.status = status
        return anomaly_pb2.IncidentResponse(incident=found)

    async def Acknowledge(self, request: anomaly_pb2.IncidentActionRequest,
                          context: grpc.aio.ServicerContext) -> anomaly_pb2.IncidentResponse:
        return await self._set(request, "acknowledged", context)

    async def Resolve(self, request: anomaly_pb2.IncidentActionRequest,
                      context: grpc.aio.ServicerContext) -> anomaly_pb2.IncidentResponse:
        return await self._set(request, "resolved", context)

    async def GetRules(self, request: anomaly_pb2.GetRulesRequest,
                       context: grpc.aio.ServicerContext) -> anomaly_pb2.RulesResponse:
        return self._rules.get(request.tenant_id) or anomaly_pb2.RulesResponse(
            tenant_id=request.tenant_id, rules_yaml="rules: []\n", version=0)

    async def PutRules(self, request: anomaly_pb2.PutRulesRequest,
                       context: grpc.aio.ServicerContext) -> anomaly_pb2.RulesResponse:
        current = await self.GetRules(anomaly_pb2.GetRulesRequest(tenant_id=request.tenant_id), context)
        if "rules:" not in request.rules_yaml:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "rules_yaml: invalid rules: rules: required")
        if request.expected_version != current.version:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                f"rules are at version {current.version}, not {request.expected_version}")
        self._rules[request.tenant_id] = changed = anomaly_pb2.RulesResponse(
            tenant_id=request.tenant_id, rules_yaml=request.rules_yaml, version=current.version + 1,
            updated_by=request.actor, updated_at_unix=int(time.time()))
        return changed


async def start(port: int = 0, host: str = "127.0.0.1") -> tuple[grpc.aio.Server, int]:
    """Start the stub server; returns it and the bound port (``port=0`` picks a free one)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    server = grpc.aio.server(interceptors=[aio_server_interceptor()])  # type: ignore[no-untyped-call]
    assignment_pb2_grpc.add_AssignmentServiceServicer_to_server(StubAssignment(), server)  # type: ignore[no-untyped-call]
    timeline_pb2_grpc.add_TimelineServiceServicer_to_server(StubTimeline(), server)  # type: ignore[no-untyped-call]
    nlp_pb2_grpc.add_NlpServiceServicer_to_server(StubNlp(), server)  # type: ignore[no-untyped-call]
    personalization_pb2_grpc.add_PersonalizationServiceServicer_to_server(  # type: ignore[no-untyped-call]
        StubPersonalization(), server)
    automation_pb2_grpc.add_AutomationServiceServicer_to_server(StubAutomation(), server)  # type: ignore[no-untyped-call]
    anomaly_pb2_grpc.add_AnomalyServiceServicer_to_server(StubAnomaly(), server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.devtools.stub_backend")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--port-file", help="write the bound port here once serving")
    args = parser.parse_args(argv)

    async def run() -> None:
        server, port = await start(args.port)
        if args.port_file:
            with open(args.port_file, "w") as fh:
                fh.write(str(port))
        print(f"stub backend on 127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
