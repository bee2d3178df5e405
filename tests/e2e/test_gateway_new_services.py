"""The gateway (real app, real Redis) in front of the REAL nlp, personalization and automation servicers on
one in-process gRPC server (the mesh's server, its error-mapping interceptor included):

- nlp: the servicer on a Milvus Lite collection of its own, indexed through its batch handler, with a tiny
  bag-of-words ONNX embedder (the real Embedder and tokenizer; all-MiniLM's weights are not the point
  here), a tiny TF-IDF sentiment head, and the LLM pipeline on its local provider;
- personalization: the recommender on in-memory state fed with a hand-written world;
- automation: the approval store on the local Redis (its Lua transitions) behind the real handler;
- anomaly: a tiny trained ensemble (ONNX), a rules engine holding the tenant's incidents and the per-tenant
  rules store on the local Redis (tests/e2e/_anomaly.py).

Asserted: answers for the caller's ids; another tenant's ids read exactly like missing ids (404, same body);
scopes (403); invalid bodies and ids (422); approve/reject transitions with the approver taken from the
credential, a repeated approve answered unchanged and a contradicting decision refused (409) with a
problem naming the status."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
import redis
from redis.asyncio import Redis as AsyncRedis
from sunday.ml.v1 import events_pb2 as e

from gateway.devtools import harness
from gateway.settings import PlanLimits
from mesh.bus import InMemoryBroker, Publisher
from mesh.config import MeshSettings
from mesh.errors import Unavailable
from mesh.events import TopicRegistry, new_envelope
from mesh.features import InMemoryAggregates
from mesh.models import OnnxModel, StaticModel, VersionedModel, stamp_metadata
from mesh.serving import ServiceBinding, build_server
from services.automation.approval import ApprovalStore, SuggestionRecord
from services.automation.handlers import AutomationHandler
from services.automation.model import VersionedScorer
from services.automation.server import binding as automation_binding
from services.automation.state import FactStore
from services.automation.validate import Validator
from services.nlp.embedder import ATTENTION_MASK, DIM, INPUT_IDS, MODEL_NAME, OUTPUT, Embedder
from services.nlp.handlers import NlpHandler
from services.nlp.search import THRESHOLD_KEY, WEIGHT_KEY, HybridSearcher
from services.nlp.server import binding as nlp_binding
from services.nlp.text import LLMPipeline, LLMSettings
from services.nlp.textwire import TextModels, TextServicer
from services.nlp.vectors import VectorIndex
from services.personalization.handlers import PersonalizationHandler
from services.personalization.server import binding as personalization_binding
from services.personalization.state import PERSONALIZATION_REDUCERS
from tests.e2e._anomaly import PEOPLE, anomaly_service
from tests.unit.nlp.test_textwire import sentiment_model
from tests.unit.personalization.helpers import recommender, world

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]
A, B = "tenant-a", "tenant-b"  # A owns every id below; B has nothing
HASH_BUCKETS = 2048
SEEDED = {"tasks": ("t-1", "t-2", "t-3"), "people": ("alice", "bob"), "suggestions": ("sug-1", "sug-2", "sug-3")}
"""The ids :func:`new_services` seeds for its tenant."""


def tiny_embedder_onnx(path: Path) -> Path:
    """A real ONNX sentence embedder with the served model's inputs and output: hashed token vectors,
    mean-pooled over the attention mask and L2-normalised (bag of words: texts sharing words are close)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = np.random.default_rng(7).standard_normal((HASH_BUCKETS, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Mod", ["input_ids", "buckets"], ["bucket"]),
        helper.make_node("Gather", ["table", "bucket"], ["vectors"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last"], ["mask3"]),
        helper.make_node("Mul", ["vectors", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "tokens"], ["summed"], keepdims=0),
        helper.make_node("LpNormalization", ["summed"], [OUTPUT], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes, "tiny-embedder",
        [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "tokens"]),
         helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "tokens"])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", DIM])],
        initializer=[numpy_helper.from_array(table, "table"),
                     numpy_helper.from_array(np.array(HASH_BUCKETS, dtype=np.int64), "buckets"),
                     numpy_helper.from_array(np.array([2], dtype=np.int64), "last"),
                     numpy_helper.from_array(np.array([1], dtype=np.int64), "tokens")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    stamp_metadata(path, {WEIGHT_KEY: 0.6, THRESHOLD_KEY: 0.75})
    return path


def task(tenant: str, task_id: str, title: str, description: str, project: str = "proj-a") -> Any:
    return new_envelope(tenant, e.TaskCreated(task_id=task_id, project_id=project, title=title,
                                              description=description), producer="test")


def nlp_world(tenant: str) -> list[Any]:
    return [task(tenant, "t-1", "Fix the SSO login failure after a password reset", ""),
            task(tenant, "t-2", "Login page SSO button is broken", "The SSO login button does nothing."),
            task(tenant, "t-3", "Quarterly budget review with finance", "Numbers for the board.")]


class NoModel:
    """No next-action model registered (the servicer's decisions and lists do not need one)."""

    @property
    def current(self) -> VersionedModel:
        raise Unavailable("no next-action model in this test")


@dataclass
class World:
    http: httpx.AsyncClient
    owner: dict[str, str]  # tenant A, every scope
    owner_client_id: str
    other: dict[str, str]  # tenant B, every scope
    approvals: ApprovalStore
    incident_ids: list[str]  # A's open anomaly incidents


async def _bearer(http: httpx.AsyncClient, tenant: str, scopes: tuple[str, ...] | None = None
                  ) -> tuple[dict[str, str], str]:
    client = await (harness.create_client(http, tenant) if scopes is None
                    else harness.create_client(http, tenant, scopes=scopes))
    return {"Authorization": f"Bearer {await harness.token(http, client)}"}, client.client_id


def _suggestion(tenant: str, suggestion_id: str, user: str) -> SuggestionRecord:
    return SuggestionRecord(tenant, suggestion_id, user, "task_status_changed", "to_status=TASK_STATUS_DONE",
                            ("move_item:group=done",), ("proj-a",), 9, 0.9, title="Move finished tasks to Done",
                            body="You did it by hand 9 times in 4 weeks.", actions_per_week=2.0)


@dataclass
class NewServices:
    """The real nlp, personalization and automation servicers' bindings on state seeded for ``tenant``."""

    bindings: list[ServiceBinding]
    approvals: ApprovalStore
    incident_ids: list[str]  # the tenant's open anomaly incidents
    llm_redis: AsyncRedis[bytes]  # closed by the owner of the loop it ran on
    cleanup: Callable[[], None]


def new_services(tmp: Path, tenant: str) -> NewServices:
    mesh = MeshSettings()
    tmp.mkdir(parents=True, exist_ok=True)
    publisher = Publisher(InMemoryBroker().producer(), TopicRegistry())
    # nlp
    model = OnnxModel.load(tiny_embedder_onnx(tmp / "embedder.onnx"), mesh.models)
    embedder = Embedder(StaticModel(VersionedModel(MODEL_NAME, "1", model)))
    index = VectorIndex(str(tmp / "vectors.db"), dim=DIM, collection=f"t_{uuid.uuid4().hex[:12]}")
    searcher = HybridSearcher(index, embedder)
    NlpHandler(index, searcher, publisher)(nlp_world(tenant))
    llm_redis: AsyncRedis[bytes] = AsyncRedis.from_url(mesh.redis.url)
    ns = f"it_gw_new_{uuid.uuid4().hex[:10]}"
    text = TextServicer(TextModels(sentiment_model(), embedder, searcher),
                        LLMPipeline(LLMSettings(), llm_redis, ns), searcher)  # type: ignore[call-arg]  # no provider: local
    # personalization
    store = InMemoryAggregates(PERSONALIZATION_REDUCERS)
    store.mark_built()
    PersonalizationHandler(store)(world(tenant))
    # automation
    sync_redis = redis.Redis.from_url(mesh.redis.url)
    approvals = ApprovalStore(sync_redis, ns)
    facts = FactStore()
    handler = AutomationHandler(facts, approvals, publisher, VersionedScorer(NoModel()))  # decisions need none
    for sid, user in (("sug-1", "alice"), ("sug-2", "alice"), ("sug-3", "bob")):
        approvals.offer(_suggestion(tenant, sid, user), time.time())

    anomaly = anomaly_service(tenant)

    def cleanup() -> None:
        anomaly.cleanup()
        index.drop()
        for key in sync_redis.scan_iter(f"{ns}:*"):
            sync_redis.delete(key)
        sync_redis.close()

    bindings = [nlp_binding(searcher, embedder, text), personalization_binding(recommender(store)),
                automation_binding(handler, Validator(facts)), anomaly.binding]
    return NewServices(bindings, approvals, anomaly.incident_ids, llm_redis, cleanup)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    services = new_services(tmp_path_factory.mktemp("new-services"), A)
    server = build_server(services.bindings, MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    try:
        roomy = PlanLimits(rate_per_s=1000, burst=10_000, client_rate_per_s=1000, client_burst=10_000,
                           daily_quota=10**7, monthly_quota=10**8)  # limits are tested elsewhere
        settings = harness.gateway_settings(backend=f"127.0.0.1:{server.port}", plans={"free": roomy})
        async with harness.lifespan_client(harness.build(settings)) as http:
            owner, owner_id = await _bearer(http, A)
            other, _ = await _bearer(http, B)
            yield World(http, owner, owner_id, other, services.approvals, services.incident_ids)
    finally:
        await server.stop()
        services.cleanup()
        await services.llm_redis.aclose()  # type: ignore[attr-defined]


def _shape(r: httpx.Response) -> tuple[int, str, Any]:
    body = r.json() if r.content else None
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("trace_id", "instance")}
    return r.status_code, r.headers.get("content-type", ""), body


async def test_nlp_answers_for_the_callers_tasks(live: World) -> None:
    http, owner = live.http, live.owner
    found = await http.post("/v1/nlp/search", json={"query": "SSO login", "k": 2}, headers=owner)
    assert found.status_code == 200, found.text
    body = found.json()
    assert {h["item_id"] for h in body["hits"]} == {"t-1", "t-2"} and body["provenance"]["model_name"] == MODEL_NAME
    assert all(h["kind"] == "task" and h["project_id"] == "proj-a" for h in body["hits"])
    similar = await http.get("/v1/nlp/tasks/t-1/similar", params={"k": 1}, headers=owner)
    assert similar.status_code == 200, similar.text
    assert [h["item_id"] for h in similar.json()["hits"]] == ["t-2"]  # itself excluded, the SSO twin first

    moods = await http.post("/v1/nlp/sentiment", headers=owner,
                            json={"texts": ["The build is broken again, terrible", "Thanks, great work"]})
    assert moods.status_code == 200, moods.text
    assert [r["label"] for r in moods.json()["results"]] == ["negative", "positive"]

    summary = await http.post("/v1/nlp/summaries", headers=owner, json={
        "title": "Sprint planning", "project_id": "proj-a",
        "utterances": [{"speaker": "Ada", "text": "I will fix the SSO login failure after password reset by "
                        "Friday."}, {"speaker": "Bo", "text": "Sounds good."}]})
    assert summary.status_code == 200, summary.text
    s = summary.json()
    assert s["summary"] and s["provider"] == "local"
    assert [(i["owner"], i["linked_task_id"]) for i in s["action_items"]] == [("Ada", "t-1")]

    draft = await http.post("/v1/nlp/drafts", json={"title": "SSO login broken", "project_id": "proj-a"},
                            headers=owner)
    assert draft.status_code == 200, draft.text
    assert draft.json()["description"] and "t-2" in draft.json()["similar_task_ids"]


async def test_personalization_recommends_the_persons_visible_tasks(live: World) -> None:
    http, owner = live.http, live.owner
    got = await http.get("/v1/personalization/recommendations", params={"user_id": "alice", "k": 2,
                                                                         "request_id": "r-1"}, headers=owner)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["user_id"] == "alice" and body["surface"] == "for_you"
    assert {i["item_id"] for i in body["items"]} == {"task-1", "task-3"}  # alice's open tasks in proj-a
    again = await http.get("/v1/personalization/recommendations", params={"user_id": "alice", "k": 2,
                                                                           "request_id": "r-1"}, headers=owner)
    assert again.json()["suggestion_id"] == body["suggestion_id"]  # the same request id: the same suggestion


async def test_another_tenants_ids_read_exactly_like_missing_ids(live: World) -> None:
    http, other = live.http, live.other
    cases = [("GET", "/v1/nlp/tasks/t-1/similar", "/v1/nlp/tasks/no-such-task/similar", None),
             ("GET", "/v1/personalization/recommendations?user_id=alice",
              "/v1/personalization/recommendations?user_id=nobody", None),
             ("POST", "/v1/automation/suggestions/sug-3/approve", "/v1/automation/suggestions/no-such/approve", {}),
             ("POST", "/v1/automation/suggestions/sug-3/reject", "/v1/automation/suggestions/no-such/reject",
              {"reason": "mine now"})]
    for method, theirs_path, missing_path, body in cases:
        theirs = await http.request(method, theirs_path, json=body, headers=other)
        missing = await http.request(method, missing_path, json=body, headers=other)
        assert theirs.status_code == 404, (theirs_path, theirs.text)
        assert _shape(theirs) == _shape(missing), (theirs_path, theirs.text, missing.text)
        assert theirs.headers["content-type"] == "application/problem+json"
    # B's searches and lists see nothing of A's
    found = await http.post("/v1/nlp/search", json={"query": "SSO login"}, headers=other)
    assert found.status_code == 200 and found.json()["hits"] == []
    assert (await http.get("/v1/automation/suggestions", headers=other)).json()["items"] == []
    # and nothing of A's changed
    assert live.approvals.get(A, "sug-3").status == "suggested"


async def test_scopes_are_enforced(live: World) -> None:
    http = live.http
    reader, _ = await _bearer(http, A, scopes=("automation:read", "nlp:read"))
    listed = await http.get("/v1/automation/suggestions", headers=reader)
    assert listed.status_code == 200
    refused = [await http.post("/v1/automation/suggestions/sug-3/approve", json={}, headers=reader),
               await http.post("/v1/automation/suggestions/sug-3/reject", json={}, headers=reader),
               await http.get("/v1/personalization/recommendations", params={"user_id": "alice"}, headers=reader)]
    for response in refused:
        assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
    assert "automation:write" in refused[0].json()["detail"]
    assert "personalization:read" in refused[2].json()["detail"]
    writer, _ = await _bearer(http, A, scopes=("automation:write",))
    assert (await http.get("/v1/automation/suggestions", headers=writer)).status_code == 403
    assert (await http.post("/v1/nlp/search", json={"query": "x"}, headers=writer)).status_code == 403
    assert live.approvals.get(A, "sug-3").status == "suggested"


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/nlp/search", {"query": "sso", "tenant_id": B}),  # the tenant is never the body's
    ("POST", "/v1/nlp/search", {"query": "   "}),
    ("POST", "/v1/nlp/search", {"query": "sso", "kind": "meeting"}),
    ("POST", "/v1/nlp/search", {"query": "sso", "project_id": 'p" or 1'}),
    ("GET", "/v1/nlp/tasks/t-1/similar?k=0", None),
    ("GET", "/v1/nlp/tasks/-t-1/similar", None),
    ("POST", "/v1/nlp/sentiment", {"texts": []}),
    ("POST", "/v1/nlp/summaries", {"title": "x", "utterances": []}),
    ("POST", "/v1/nlp/drafts", {"title": " "}),
    ("GET", "/v1/personalization/recommendations?user_id=alice&k=51", None),
    ("GET", "/v1/personalization/recommendations?user_id=a%20b", None),
    ("GET", "/v1/personalization/recommendations", None),
    ("POST", "/v1/automation/suggestions/sug-3/approve", {"decided_by": "someone-else"}),
    ("POST", "/v1/automation/suggestions/sug 3/approve", {}),
    ("GET", "/v1/automation/suggestions?limit=0", None),
    ("POST", "/v1/anomaly/scores", {"user_id": "alice", "events": []}),
    ("POST", "/v1/anomaly/scores", {"user_id": "alice", "tenant_id": B,
                                    "events": [{"occurred_at": "2026-01-05T10:00:00Z", "action": "login"}]}),
    ("POST", "/v1/anomaly/scores", {"user_id": "alice", "events": [{"occurred_at": "2026-01-05T10:00:00",
                                                                    "action": "login"}]}),
    ("POST", "/v1/anomaly/incidents/inc%201/resolve", None),
    ("PUT", "/v1/anomaly/rules", {"rules_yaml": "rules: []", "expected_version": -1}),
    ("PUT", "/v1/anomaly/rules", {"rules_yaml": "rules: []", "expected_version": 0, "actor": "someone-else"}),
])
async def test_invalid_requests_are_422_problems(live: World, method: str, path: str, body: Any) -> None:
    response = await live.http.request(method, path, json=body, headers=live.owner)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_approve_and_reject_transitions(live: World) -> None:
    http, owner = live.http, live.owner
    listed = await http.get("/v1/automation/suggestions", params={"user_id": "alice"}, headers=owner)
    assert [s["suggestion_id"] for s in listed.json()["items"]] == ["sug-1", "sug-2"]
    assert listed.json()["items"][0]["rule"]["actions"] == ["move_item:group=done"]

    approved = await http.post("/v1/automation/suggestions/sug-1/approve", headers=owner)  # no body needed
    assert approved.status_code == 200, approved.text
    assert (approved.json()["status"], approved.json()["decided_by"]) == ("approved", live.owner_client_id)
    again = await http.post("/v1/automation/suggestions/sug-1/approve", json={"reason": "retry"}, headers=owner)
    assert again.status_code == 200 and again.json() == approved.json()  # a retried approve: unchanged
    contradicting = await http.post("/v1/automation/suggestions/sug-1/reject", json={"reason": "no"},
                                    headers=owner)
    assert contradicting.status_code == 409
    assert contradicting.headers["content-type"] == "application/problem+json"
    assert "sug-1 is approved: only a suggested one can become rejected" in contradicting.json()["detail"]

    rejected = await http.post("/v1/automation/suggestions/sug-2/reject", json={"reason": "too noisy"},
                               headers=owner)
    assert rejected.status_code == 200, rejected.text
    assert (rejected.json()["status"], rejected.json()["reason"]) == ("rejected", "too noisy")
    late = await http.post("/v1/automation/suggestions/sug-2/approve", json={}, headers=owner)
    assert late.status_code == 409 and "sug-2 is rejected" in late.json()["detail"]

    stored = live.approvals.get(A, "sug-1")
    assert (stored.status, stored.decided_by) == ("approved", live.owner_client_id)
    assert live.approvals.get(A, "sug-2").status == "rejected"
    remaining = await http.get("/v1/automation/suggestions", headers=owner)
    assert [s["suggestion_id"] for s in remaining.json()["items"]] == ["sug-3"]


async def test_automation_analytics_per_week_of_the_callers_tenant(live: World) -> None:
    http, c = live.http, "tenant-c"  # a tenant of this test's own: the other tests' decisions do not count here
    owner, _ = await _bearer(http, c)
    for sid in ("c-1", "c-2", "c-3"):
        live.approvals.offer(_suggestion(c, sid, "carol"), time.time())
    assert (await http.post("/v1/automation/suggestions/c-1/approve", headers=owner)).status_code == 200
    assert (await http.post("/v1/automation/suggestions/c-2/reject", json={}, headers=owner)).status_code == 200
    live.approvals.transition(c, "c-3", "expired", time.time())

    got = await http.get("/v1/automation/analytics", params={"weeks": 2}, headers=owner)
    assert got.status_code == 200, got.text
    weeks = got.json()["weeks"]
    starts = [datetime.fromisoformat(w["week_start"]).date() for w in weeks]
    assert len(weeks) == 2 and starts[1] - starts[0] == timedelta(weeks=1) and starts[1].weekday() == 0
    assert starts[1] <= datetime.now(UTC).date() < starts[1] + timedelta(weeks=1)
    totals = {k: sum(w[k] for w in weeks) for k in ("shown", "accepted", "rejected", "expired",
                                                    "actions_saved_estimate")}  # both weeks: a Monday midnight
    assert totals == {"shown": 3, "accepted": 1, "rejected": 1, "expired": 1, "actions_saved_estimate": 2.0}
    assert len((await http.get("/v1/automation/analytics", headers=owner)).json()["weeks"]) == 4  # the default

    # the tenant is the credential's: B sees zeros, whatever it asks for
    other = await http.get("/v1/automation/analytics", params={"weeks": 2, "tenant_id": c}, headers=live.other)
    assert other.status_code == 200 and all(w["shown"] == w["accepted"] == 0 for w in other.json()["weeks"])
    for bad in (0, 53, "x"):
        refused = await http.get("/v1/automation/analytics", params={"weeks": bad}, headers=owner)
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json", bad
    writer, _ = await _bearer(http, c, scopes=("automation:write",))
    forbidden = await http.get("/v1/automation/analytics", headers=writer)
    assert forbidden.status_code == 403 and "automation:read" in forbidden.json()["detail"]


def _activity(start: datetime, hours: int, per_hour: int, action: str = "edit") -> list[dict[str, Any]]:
    return [{"occurred_at": (start + timedelta(hours=h, minutes=m)).isoformat(), "action": action, "count": 1,
             "ip": "10.0.0.1", "device": "laptop"} for h in range(hours) for m in range(per_hour)]


async def test_anomaly_scores_a_persons_newest_hour(live: World) -> None:
    http, owner = live.http, live.owner
    start = datetime(2026, 1, 5, 8, tzinfo=UTC)
    quiet = _activity(start, 5, 3)
    burst = quiet + [{"occurred_at": (start + timedelta(hours=5, minutes=m)).isoformat(), "action": "bulk_delete",
                      "count": 500, "ip": f"203.0.113.{m}", "device": f"dev-{m}"} for m in range(40)]
    scored = [await http.post("/v1/anomaly/scores", json={"user_id": "alice", "events": events}, headers=owner)
              for events in (quiet, burst)]
    for response in scored:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["user_id"] == "alice" and body["provenance"]["model_version"] == "e2e-1"
        assert [c["feature"] for c in body["components"]] == ["isolation_forest_z", "lstm_autoencoder_z"]
    assert scored[1].json()["score"] > scored[0].json()["score"]  # a bulk-delete storm from 40 devices


async def test_anomaly_incidents_are_listed_acknowledged_and_resolved(live: World) -> None:
    http, owner = live.http, live.owner
    listed = await http.get("/v1/anomaly/incidents", headers=owner)
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert sorted(i["incident_id"] for i in items) == live.incident_ids
    assert sorted(i["entity_id"] for i in items) == sorted(PEOPLE) and {i["status"] for i in items} == {"open"}
    first, second = live.incident_ids
    acked = await http.post(f"/v1/anomaly/incidents/{first}/acknowledge", headers=owner)
    assert acked.status_code == 200 and acked.json()["status"] == "acknowledged", acked.text
    resolved = await http.post(f"/v1/anomaly/incidents/{second}/resolve", headers=owner)
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved", resolved.text
    still = (await http.get("/v1/anomaly/incidents", headers=owner)).json()["items"]
    assert [(i["incident_id"], i["status"]) for i in still] == [(first, "acknowledged")]
    everything = (await http.get("/v1/anomaly/incidents", params={"include_resolved": "true"}, headers=owner)).json()
    assert {i["incident_id"]: i["status"] for i in everything["items"]} == {first: "acknowledged",
                                                                           second: "resolved"}
    # another tenant sees none of them and its acknowledge reads exactly like a missing incident's
    assert (await http.get("/v1/anomaly/incidents", headers=live.other)).json()["items"] == []
    theirs = await http.post(f"/v1/anomaly/incidents/{first}/resolve", headers=live.other)
    missing = await http.post("/v1/anomaly/incidents/no-such-incident/resolve", headers=live.other)
    assert theirs.status_code == 404 and _shape(theirs) == _shape(missing)
    assert (await http.get("/v1/anomaly/incidents", headers=owner)).json()["items"][0]["status"] == "acknowledged"


GOOD_RULES = """cooldown_minutes: 30
rules:
  - {name: unusual_activity, kind: score, thresholds: {warning: 1.0, critical: 5.0}}
"""


async def test_anomaly_rules_per_tenant_validated_versioned_admin_only(live: World) -> None:
    http = live.http
    admin, admin_id = await _bearer(http, A, scopes=("anomaly:admin",))
    defaults = await http.get("/v1/anomaly/rules", headers=admin)
    assert defaults.status_code == 200, defaults.text
    assert defaults.json()["version"] == 0 and defaults.json()["updated_at"] is None
    bad = await http.put("/v1/anomaly/rules", headers=admin, json={"expected_version": 0, "rules_yaml":
                         "rules:\n  - {name: burst, kind: static, action: x, min_events: 0, within_minutes: 5}\n"})
    assert bad.status_code == 400 and bad.headers["content-type"] == "application/problem+json", bad.text
    assert "rules_yaml" in bad.json()["detail"] and "min_events" in bad.json()["detail"]
    changed = await http.put("/v1/anomaly/rules", json={"rules_yaml": GOOD_RULES, "expected_version": 0},
                             headers=admin)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["version"], changed.json()["updated_by"]) == (1, admin_id)  # the author: the caller
    stale = await http.put("/v1/anomaly/rules", json={"rules_yaml": GOOD_RULES, "expected_version": 0},
                           headers=admin)
    assert stale.status_code == 409 and stale.headers["content-type"] == "application/problem+json", stale.text
    assert (await http.get("/v1/anomaly/rules", headers=admin)).json()["rules_yaml"] == GOOD_RULES
    # tenant B still has the defaults; B's change does not touch A's rules
    theirs = (await http.get("/v1/anomaly/rules", headers=live.other)).json()
    assert theirs["version"] == 0 and theirs["rules_yaml"] == defaults.json()["rules_yaml"]
    # readers and writers of incidents cannot read or change rules; the admin cannot act on incidents
    reader, _ = await _bearer(http, A, scopes=("anomaly:read", "anomaly:write"))
    for response in (await http.get("/v1/anomaly/rules", headers=reader),
                     await http.put("/v1/anomaly/rules", json={"rules_yaml": GOOD_RULES, "expected_version": 1},
                                    headers=reader),
                     await http.get("/v1/anomaly/incidents", headers=admin),
                     await http.post(f"/v1/anomaly/incidents/{live.incident_ids[0]}/resolve", headers=admin)):
        assert response.status_code == 403 and response.headers["content-type"] == "application/problem+json"
    only_read, _ = await _bearer(http, A, scopes=("anomaly:read",))
    refused = await http.post(f"/v1/anomaly/incidents/{live.incident_ids[0]}/acknowledge", headers=only_read)
    assert refused.status_code == 403 and "anomaly:write" in refused.json()["detail"]
    assert (await http.get("/v1/anomaly/rules", headers=admin)).json()["version"] == 1
