"""The nlp, personalization and automation adapters without I/O: requests to protos (the tenant and the
approver always the caller's), protos to responses, one stub pool per new backend, no capability pending."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError
from sunday.ml.v1 import automation_pb2, events_pb2, nlp_pb2, personalization_pb2

from gateway import create_app
from gateway.backends import Backends
from gateway.devtools.harness import gateway_settings
from gateway.schemas.automation import DecisionIn, Suggestion, SuggestionPage
from gateway.schemas.nlp import SearchIn, SearchResults, SummaryIn
from gateway.schemas.personalization import Recommendations
from gateway.settings import BackendSettings


def test_search_request_carries_the_callers_tenant_and_only_literal_filters() -> None:
    request = SearchIn(query="login", k=3, project_id="proj-1").to_proto("acme")
    assert (request.tenant_id, request.query, request.k) == ("acme", "login", 3)
    assert dict(request.filters) == {"kind": "task", "project_id": "proj-1"}
    assert dict(SearchIn(query="x", kind="comment").to_proto("acme").filters) == {"kind": "comment"}
    for bad in ({"query": "x", "tenant_id": "other"}, {"query": " \t"}, {"query": "x", "project_id": "-p"},
                {"query": "x", "k": 0}, {"query": "x", "kind": "meeting"}):
        with pytest.raises(ValidationError):
            SearchIn.model_validate(bad)


def test_summary_request_and_search_results() -> None:
    proto = SummaryIn.model_validate({"title": "Sync", "utterances": [{"speaker": "Ada", "text": "I will fix it."}]}
                                     ).to_proto("acme")
    assert proto.tenant_id == "acme" and proto.project_id == "" and proto.utterances[0].speaker == "Ada"
    results = SearchResults.from_proto(nlp_pb2.SearchResponse(hits=[nlp_pb2.SearchHit(
        item_id="t-1", kind="task", project_id="p", title="T", score=0.5, dense_score=0.4, lexical_score=1.0)]))
    assert results.hits[0].item_id == "t-1" and results.provenance.predicted_at is None


def test_decision_is_the_callers_and_unknown_statuses_read_unspecified() -> None:
    proto = DecisionIn(reason="noisy").to_proto("acme", "sug-1", decided_by="cl_1")
    assert (proto.tenant_id, proto.suggestion_id, proto.decided_by, proto.reason) == ("acme", "sug-1", "cl_1", "noisy")
    with pytest.raises(ValidationError):
        DecisionIn.model_validate({"decided_by": "someone-else"})
    page = SuggestionPage.from_proto(automation_pb2.ListSuggestionsResponse(suggestions=[
        events_pb2.Suggestion(suggestion_id="s", status="approved", support=3,
                              rule=events_pb2.AutomationRule(trigger="task_created", actions=["a:b"])),
        events_pb2.Suggestion(suggestion_id="t", status="something-new")]))
    assert [s.status for s in page.items] == ["approved", "unspecified"]
    assert page.items[0].rule.actions == ["a:b"] and page.items[0].support == 3
    assert Suggestion.from_proto(events_pb2.Suggestion(status="")).status == "unspecified"


def test_recommendations_from_proto() -> None:
    out = Recommendations.from_proto(personalization_pb2.RecommendResponse(
        suggestion_id="evt-1", prediction=events_pb2.PersonalizationPrediction(
            user_id="ada", surface="for_you", policy="hybrid", policy_version="v1",
            items=[events_pb2.ScoredItem(item_id="task-1", score=0.7)])))
    assert (out.suggestion_id, out.user_id, [i.item_id for i in out.items]) == ("evt-1", "ada", ["task-1"])


def test_each_new_backend_gets_its_pool_of_channels() -> None:
    settings = BackendSettings(channels_per_target=3)
    assert (settings.nlp, settings.anomaly, settings.personalization, settings.automation) == (
        "127.0.0.1:50053", "127.0.0.1:50054", "127.0.0.1:50055", "127.0.0.1:50056")

    async def connect() -> None:
        backends = Backends.connect(settings)
        try:
            assert backends.nlps and backends.personalizations and backends.automations and backends.anomalies
            assert len(backends.nlps) == len(backends.personalizations) == len(backends.automations) == 3
            assert len(backends.anomalies) == 3
            assert len(backends.channels) == 3 * 6  # assignment, timeline, nlp, anomaly, personalization, automation
            assert backends.nlp is not backends.nlp  # round robin
        finally:
            await backends.close()
        empty = Backends.connect(BackendSettings(nlp="", personalization="", automation="", anomaly=""))
        try:
            assert empty.nlp is None and empty.personalization is None and empty.automation is None
            assert empty.anomaly is None
        finally:
            await empty.close()

    asyncio.run(connect())


def test_no_capability_is_pending_any_more() -> None:
    paths = create_app(gateway_settings()).openapi()["paths"]
    assert [p for p in paths if p.endswith("/predict")] == []
    assert {"/v1/nlp/search", "/v1/personalization/recommendations",
            "/v1/automation/suggestions/{suggestion_id}/approve", "/v1/anomaly/scores", "/v1/anomaly/incidents",
            "/v1/anomaly/incidents/{incident_id}/acknowledge", "/v1/anomaly/incidents/{incident_id}/resolve",
            "/v1/anomaly/rules", "/v1/automation/analytics"} <= set(paths)
    assert set(paths["/v1/anomaly/rules"]) == {"get", "put"}
