"""Auth and tenant isolation through the real app, against the local Redis and a stub gRPC backend."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from gateway.devtools import harness, stub_backend

pytestmark = pytest.mark.integration


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    server, port = await stub_backend.start(0)
    try:
        app = harness.build(harness.gateway_settings(backend=f"127.0.0.1:{port}"))
        async with harness.lifespan_client(app) as client:
            yield client
    finally:
        await server.stop(None)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_token_grant_and_refusals(http: httpx.AsyncClient) -> None:
    acme = await harness.create_client(http, "acme", scopes=("assignment:read",))
    ok = await http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": acme.client_id,
                                               "client_secret": acme.client_secret})
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer" and ok.json()["scope"] == "assignment:read"
    wrong = await http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": acme.client_id,
                                                  "client_secret": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_client"
    greedy = await http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": acme.client_id,
                                                   "client_secret": acme.client_secret, "scope": "webhooks:write"})
    assert greedy.status_code == 400 and greedy.json()["error"] == "invalid_scope"
    grant = await http.post("/oauth/token", data={"grant_type": "password"})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    assert acme.client_secret not in (wrong.text + greedy.text)


async def test_missing_and_invalid_credentials_are_401(http: httpx.AsyncClient) -> None:
    body = {"task_id": "task-1"}
    assert (await http.post("/v1/assignment/rank", json=body)).status_code == 401
    assert (await http.post("/v1/assignment/rank", json=body, headers=_bearer("x.y.z"))).status_code == 401
    assert (await http.post("/v1/assignment/rank", json=body, headers={"X-API-Key": "smk.0011223344556677.x"}
                            )).status_code == 401


async def test_wrong_scope_is_403(http: httpx.AsyncClient) -> None:
    client = await harness.create_client(http, "acme", scopes=("timeline:read",))
    token = await harness.token(http, client)
    response = await http.post("/v1/assignment/rank", json={"task_id": "task-1"}, headers=_bearer(token))
    assert response.status_code == 403 and "assignment:read" in response.json()["detail"]
    assert (await http.get("/v1/timeline/tasks/task-1", headers=_bearer(token))).status_code == 200
    assert (await http.get("/v1/webhooks", headers=_bearer(token))).status_code == 403


async def test_cross_tenant_ids_are_404_and_leak_nothing(http: httpx.AsyncClient) -> None:
    acme = await harness.token(http, await harness.create_client(http, "acme"))
    globex = await harness.token(http, await harness.create_client(http, "globex"))
    mine = await http.post("/v1/assignment/rank", json={"task_id": "task-1"}, headers=_bearer(acme))
    assert mine.status_code == 200 and mine.json()["candidates"][0]["user_id"] == "ada"
    theirs = await http.post("/v1/assignment/rank", json={"task_id": "task-1"}, headers=_bearer(globex))
    nobody = await http.post("/v1/assignment/rank", json={"task_id": "task-404"}, headers=_bearer(globex))
    assert theirs.status_code == nobody.status_code == 404
    # another tenant's id reads exactly like a missing one (each response has its own trace id)
    assert {**theirs.json(), "trace_id": None} == {**nobody.json(), "trace_id": None}
    assert (await http.get("/v1/timeline/projects/proj-1", headers=_bearer(globex))).status_code == 404
    # the tenant can never come from the body
    smuggled = await http.post("/v1/assignment/rank", json={"task_id": "task-1", "tenant_id": "acme"},
                               headers=_bearer(globex))
    assert smuggled.status_code == 422
    # webhooks and API keys of acme are invisible to globex
    sub = (await http.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/h", "event_types": ["alert"]},
                           headers=_bearer(acme))).json()
    assert (await http.get(f"/v1/webhooks/{sub['id']}", headers=_bearer(globex))).status_code == 404
    assert (await http.delete(f"/v1/webhooks/{sub['id']}", headers=_bearer(globex))).status_code == 404
    assert (await http.get("/v1/webhooks", headers=_bearer(globex))).json() == []
    assert (await http.get(f"/v1/webhooks/{sub['id']}", headers=_bearer(acme))).status_code == 200
    key = (await http.post("/v1/api-keys", json={"scopes": ["assignment:read"]}, headers=_bearer(acme))).json()
    assert (await http.delete(f"/v1/api-keys/{key['key_id']}", headers=_bearer(globex))).status_code == 404
    assert "secret" not in (await http.get("/v1/webhooks", headers=_bearer(acme))).text


async def test_api_keys_hashed_scoped_and_revocable(http: httpx.AsyncClient) -> None:
    owner = await harness.token(http, await harness.create_client(http, "acme"))
    created = await http.post("/v1/api-keys", json={"scopes": ["assignment:read"], "name": "ci"},
                              headers=_bearer(owner))
    assert created.status_code == 201
    key = created.json()["key"]
    ranked = await http.post("/v1/assignment/rank", json={"task_id": "task-1"}, headers={"X-API-Key": key})
    assert ranked.status_code == 200
    assert (await http.get("/v1/timeline/tasks/task-1", headers={"X-API-Key": key})).status_code == 403
    listed = await http.get("/v1/api-keys", headers=_bearer(owner))
    assert key not in listed.text and listed.json()["items"][0]["name"] == "ci"
    # Redis holds only a hash of the secret
    ctx = http._transport.app.state.gateway  # type: ignore[attr-defined]
    stored = await ctx.redis.hgetall(f"{ctx.settings.redis_prefix}apikey:{created.json()['key_id']}")
    assert key.rsplit(".", 1)[1].encode() not in b"".join(stored.values())
    assert (await http.delete(f"/v1/api-keys/{created.json()['key_id']}", headers=_bearer(owner))).status_code == 204
    assert (await http.post("/v1/assignment/rank", json={"task_id": "task-1"}, headers={"X-API-Key": key})
            ).status_code == 401
    limited = await harness.token(http, await harness.create_client(http, "acme", scopes=("keys:write",)))
    escalate = await http.post("/v1/api-keys", json={"scopes": ["webhooks:write"]}, headers=_bearer(limited))
    assert escalate.status_code == 403


def _port_nobody_listens_on() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on return: connections to it are refused


async def test_a_configured_backend_that_is_down_answers_503_problem() -> None:
    """Every capability has routes now; a service whose target is configured but unreachable is the 503
    path: the gateway's retries of UNAVAILABLE run out within the deadline, then 503 with Retry-After."""
    settings = harness.gateway_settings(backend=f"127.0.0.1:{_port_nobody_listens_on()}")
    async with harness.lifespan_client(harness.build(settings)) as http:
        token = await harness.token(http, await harness.create_client(http, "acme"))
        for method, path in (("GET", "/v1/anomaly/incidents"), ("POST", "/v1/anomaly/incidents/inc-1/resolve"),
                             ("GET", "/v1/timeline/tasks/task-1")):
            response = await http.request(method, path, headers=_bearer(token))
            assert response.status_code == 503 and response.headers["retry-after"] == "5", (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            body = response.json()
            assert body["status"] == 503 and body["retry_after_s"] == 5 and "unavailable" in body["detail"]


async def test_http_span_and_grpc_call_share_one_trace(span_exporter: InMemorySpanExporter) -> None:
    server, port = await stub_backend.start(0)
    try:
        app = harness.build(harness.gateway_settings(backend=f"127.0.0.1:{port}"))
        async with harness.lifespan_client(app) as http:
            token = await harness.token(http, await harness.create_client(http, "acme"))
            span_exporter.clear()
            ranked = await http.post("/v1/assignment/rank", json={"task_id": "task-1"}, headers=_bearer(token))
    finally:
        await server.stop(None)
    spans = span_exporter.get_finished_spans()
    http_spans = [s for s in spans if s.kind == SpanKind.SERVER and "/v1/assignment/rank" in s.name]
    grpc_client = [s for s in spans if s.kind == SpanKind.CLIENT and "RankAssignees" in s.name]
    grpc_server = [s for s in spans if s.kind == SpanKind.SERVER and "RankAssignees" in s.name]
    assert http_spans and grpc_client and grpc_server
    trace_id = http_spans[0].context.trace_id
    assert grpc_client[0].context.trace_id == grpc_server[0].context.trace_id == trace_id
    # the service saw the same trace (it stamps it into the prediction's provenance)
    assert ranked.json()["provenance"]["trace_id"] == format(trace_id, "032x")
