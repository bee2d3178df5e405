"""The adversarial suite, against the gateway in front of the REAL assignment, timeline and anomaly services
(not the stub backend): another tenant's ids read exactly like missing ids on every route with an id, forged
tokens are 401 problems, API keys hold to their scopes and tenant, and a revoked key is refused at once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.devtools import harness
from gateway.settings import GatewaySettings
from mesh.bus import InMemoryBroker, Publisher
from mesh.config import MeshSettings, ModelSettings
from mesh.events import Envelope, TopicRegistry
from mesh.models import OnnxModel, StaticModel, VersionedModel
from mesh.serving import build_server
from services.assignment.server import binding as assignment_binding
from services.timeline.export import export_untrained
from services.timeline.handlers import in_memory_handler
from services.timeline.predictor import MODEL_NAME
from services.timeline.server import binding as timeline_binding
from simulator import SimConfig, Simulation
from tests.e2e._anomaly import anomaly_service
from tests.unit.assignment.helpers import build_service, static_model, tiny_model

pytestmark = pytest.mark.integration
TIMELINE_EVENTS = {"user_joined", "project_created", "milestone_created", "task_created", "task_assigned",
                   "task_status_changed", "task_completed"}


@pytest.fixture(scope="module")
def assignment_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("assignment"))


@dataclass
class World:
    http: httpx.AsyncClient
    settings: GatewaySettings
    tenant: str  # owns the simulated data ("B")
    task_id: str
    project_id: str
    victim: dict[str, str]  # B's credentials
    incident_ids: list[str]  # B's open anomaly incidents
    attacker: dict[str, str]  # tenant A's credentials, every scope


def _events() -> list[Envelope]:
    return list(Simulation(SimConfig(tenants=1, users_per_tenant=10, weeks=1, seed=11)).events())


@asynccontextmanager
async def _world(assignment_model: Path, tmp: Path) -> AsyncIterator[World]:
    events = _events()
    tenant = events[0].tenant_id
    model = StaticModel(VersionedModel(MODEL_NAME, "1", OnnxModel.load(export_untrained(tmp), ModelSettings())))
    handler = in_memory_handler(model, Publisher(InMemoryBroker().producer(), TopicRegistry()), simulations=100)
    handler([env for env in events if env.type in TIMELINE_EVENTS])
    predictor = handler.predictor
    assignment = build_service(static_model(assignment_model))
    assignment.apply(events)
    task = next(e.task_created for e in events if e.type == "task_created")
    anomaly = anomaly_service(tenant)
    server = build_server([timeline_binding(predictor), assignment_binding(assignment.ranker), anomaly.binding],
                          MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    try:
        settings = harness.gateway_settings(backend=f"127.0.0.1:{server.port}")
        async with harness.lifespan_client(harness.build(settings)) as http:
            victim = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, tenant))}"}
            attacker = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, 'a'))}"}
            yield World(http, settings, tenant, task.task_id, task.project_id, victim, anomaly.incident_ids,
                        attacker)
    finally:
        await server.stop()
        anomaly.cleanup()


@pytest.fixture
async def world(assignment_model: Path, tmp_path: Path,
                span_exporter: InMemorySpanExporter) -> AsyncIterator[World]:
    async with _world(assignment_model, tmp_path) as w:
        yield w


def _same(theirs: httpx.Response, missing: httpx.Response) -> bool:
    def shape(r: httpx.Response) -> tuple[int, str, Any]:
        body = r.json() if r.content else None
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in ("trace_id", "instance")}
        return r.status_code, r.headers.get("content-type", ""), body

    return shape(theirs) == shape(missing)


async def test_another_tenants_ids_read_exactly_like_missing_ids_on_every_route(world: World) -> None:
    http, victim = world.http, world.victim
    sub = (await http.post("/v1/webhooks", headers=victim,
                           json={"url": "https://93.184.215.14/hook", "event_types": ["alert"]})).json()
    ctx = http._transport.app.state.gateway  # type: ignore[attr-defined]
    [dlv] = await ctx.webhooks.enqueue(world.tenant, uuid.uuid4().hex, "alert", b"{}", "")
    key = (await http.post("/v1/api-keys", headers=victim, json={"scopes": ["timeline:read"]})).json()
    missing_sub, missing_dlv, missing_key = "wh_" + "0" * 20, "dlv_" + "0" * 24, "0" * 16
    # (method, path with B's id, path with a missing id, body)
    cases: list[tuple[str, str, str, dict[str, Any] | None]] = [
        ("POST", "/v1/assignment/rank", "/v1/assignment/rank", None),
        ("GET", f"/v1/timeline/tasks/{world.task_id}", "/v1/timeline/tasks/no-such-task", None),
        ("GET", f"/v1/timeline/projects/{world.project_id}", "/v1/timeline/projects/no-such-project", None),
        ("GET", f"/v1/webhooks/{sub['id']}", f"/v1/webhooks/{missing_sub}", None),
        ("PATCH", f"/v1/webhooks/{sub['id']}", f"/v1/webhooks/{missing_sub}", {"description": "pwned"}),
        ("DELETE", f"/v1/webhooks/{sub['id']}", f"/v1/webhooks/{missing_sub}", None),
        ("GET", f"/v1/webhooks/{sub['id']}/deliveries", f"/v1/webhooks/{missing_sub}/deliveries", None),
        ("GET", f"/v1/webhooks/deliveries/{dlv}", f"/v1/webhooks/deliveries/{missing_dlv}", None),
        ("POST", f"/v1/webhooks/deliveries/{dlv}/replay", f"/v1/webhooks/deliveries/{missing_dlv}/replay", None),
        ("DELETE", f"/v1/api-keys/{key['key_id']}", f"/v1/api-keys/{missing_key}", None),
        *[("POST", f"/v1/anomaly/incidents/{incident}/{action}", f"/v1/anomaly/incidents/inc-missing-{i}/{action}",
           None) for i, incident in enumerate(world.incident_ids) for action in ("acknowledge", "resolve")],
    ]
    for method, theirs_path, missing_path, body in cases:
        if theirs_path == "/v1/assignment/rank":
            theirs = await http.post(theirs_path, json={"task_id": world.task_id}, headers=world.attacker)
            missing = await http.post(missing_path, json={"task_id": "no-such-task"}, headers=world.attacker)
        else:
            theirs = await http.request(method, theirs_path, json=body, headers=world.attacker)
            missing = await http.request(method, missing_path, json=body, headers=world.attacker)
        assert theirs.status_code == 404, (method, theirs_path, theirs.text)
        assert _same(theirs, missing), (method, theirs_path, theirs.text, missing.text)
    # and nothing of B's changed: the subscription, its delivery and the key are all still there
    assert (await http.get(f"/v1/webhooks/{sub['id']}", headers=victim)).json()["description"] == ""
    assert (await http.get(f"/v1/webhooks/deliveries/{dlv}", headers=victim)).status_code == 200
    assert [k["key_id"] for k in (await http.get("/v1/api-keys", headers=victim)).json()["items"]] == [key["key_id"]]
    incidents = (await http.get("/v1/anomaly/incidents", headers=victim)).json()["items"]
    assert sorted((i["incident_id"], i["status"]) for i in incidents) == [(i, "open") for i in world.incident_ids]
    # lists are the caller's own
    assert (await http.get("/v1/webhooks", headers=world.attacker)).json() == []
    assert (await http.get("/v1/api-keys", headers=world.attacker)).json()["items"] == []
    assert (await http.get("/v1/webhooks/dead-letters", headers=world.attacker)).json()["items"] == []
    assert (await http.get("/v1/anomaly/incidents", headers=world.attacker,
                           params={"include_resolved": "true"})).json()["items"] == []
    # the attacker's rules change is its own tenant's: the victim's rules stay the defaults
    own_rules = await http.put("/v1/anomaly/rules", headers=world.attacker, json={
        "expected_version": 0, "rules_yaml": "rules:\n  - {name: s, kind: score, thresholds: {warning: 9.0}}\n"})
    assert own_rules.status_code == 200, own_rules.text
    assert (await http.get("/v1/anomaly/rules", headers=victim)).json()["version"] == 0
    # the victim's own reads work (the 404s above are not a broken backend)
    assert (await http.get(f"/v1/timeline/tasks/{world.task_id}", headers=victim)).status_code == 200
    ranked = await http.post("/v1/assignment/rank", json={"task_id": world.task_id}, headers=victim)
    assert ranked.status_code == 200, ranked.text


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{_b64(signature)}"


def _forged_tokens(settings: GatewaySettings) -> Iterator[tuple[str, str]]:
    """(case, token) for every way of forging or misusing a token; the tenant claimed is the victim's."""
    pem = settings.auth.signing_keys[0].private_key_pem.get_secret_value().encode()
    key = serialization.load_pem_private_key(pem, None)
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    claims = {"iss": settings.auth.issuer, "aud": settings.auth.audience, "sub": "cl_forged", "tid": "victim",
              "scope": "timeline:read webhooks:read", "plan": "free", "iat": now, "nbf": now, "exp": now + 600}

    def signed(extra: dict[str, Any] | None = None, kid: str | None = "k1") -> str:
        headers = {"kid": kid} if kid is not None else {}
        return jwt.encode({**claims, **(extra or {})}, key, algorithm="ES256", headers=headers)  # type: ignore[arg-type]

    yield "alg none", _unsigned({"alg": "none", "typ": "JWT", "kid": "k1"}, claims)
    yield "alg none, no kid", _unsigned({"alg": "none", "typ": "JWT"}, claims)
    hs_input = f"{_b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'}).encode())}." \
               f"{_b64(json.dumps(claims).encode())}"
    hs_sig = hmac.new(public_pem, hs_input.encode(), hashlib.sha256).digest()
    yield "HS256 signed with the public key", f"{hs_input}.{_b64(hs_sig)}"
    yield "unknown kid", signed(kid="k-unknown")
    yield "missing kid", signed(kid=None)
    yield "expired", signed({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})
    yield "not yet valid", signed({"nbf": now + 3600})
    yield "wrong audience", signed({"aud": "someone-else"})
    yield "wrong issuer", signed({"iss": "https://evil.example"})
    yield "no tenant claim", jwt.encode({k: v for k, v in claims.items() if k != "tid"}, key,  # type: ignore[arg-type]
                                        algorithm="ES256", headers={"kid": "k1"})
    good = signed()
    head, payload, sig = good.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered["scope"] += " keys:write"
    yield "tampered payload", f"{head}.{_b64(json.dumps(tampered).encode())}.{sig}"
    yield "signature stripped", f"{head}.{payload}."
    yield "garbage", "not-a-token"
    yield "empty segments", ".."


PROTECTED = [("GET", "/v1/timeline/tasks/task-1"), ("POST", "/v1/assignment/rank"), ("GET", "/v1/webhooks"),
             ("GET", "/v1/api-keys"), ("GET", "/v1/anomaly/incidents"), ("POST", "/v1/anomaly/incidents/i-1/resolve"),
             ("GET", "/v1/anomaly/rules"), ("GET", "/v1/automation/analytics")]


async def test_forged_tokens_are_401_problems(world: World) -> None:
    forged = list(_forged_tokens(world.settings))
    assert len(forged) == 14
    for case, token in forged:
        for method, path in PROTECTED:
            response = await world.http.request(method, path, headers={"Authorization": f"Bearer {token}"},
                                                json={"task_id": "task-1"} if method == "POST" else None)
            assert response.status_code == 401, (case, path, response.status_code, response.text)
            assert response.headers["content-type"] == "application/problem+json", case
            assert response.json()["type"].endswith("/unauthorized") and "Bearer" in response.headers[
                "www-authenticate"], case


async def test_api_keys_hold_to_their_scopes_and_tenant_and_die_when_revoked(world: World) -> None:
    http = world.http
    created = (await http.post("/v1/api-keys", headers=world.victim, json={"scopes": ["timeline:read"]})).json()
    key = {"X-API-Key": created["key"]}
    assert (await http.get(f"/v1/timeline/tasks/{world.task_id}", headers=key)).status_code == 200
    for method, path in [("POST", "/v1/assignment/rank"), ("GET", "/v1/webhooks"), ("GET", "/v1/api-keys"),
                         ("POST", "/v1/api-keys"), ("GET", "/v1/anomaly/incidents"), ("GET", "/v1/anomaly/rules"),
                         ("POST", f"/v1/anomaly/incidents/{world.incident_ids[0]}/resolve"),
                         ("GET", "/v1/automation/analytics")]:
        response = await http.request(method, path, headers=key,
                                      json={"task_id": world.task_id, "scopes": ["timeline:read"]})
        assert response.status_code == 403, (path, response.text)
    # the attacker's key (every scope) sees none of the victim's data
    attacker_key = (await http.post("/v1/api-keys", headers=world.attacker,
                                    json={"scopes": ["timeline:read", "assignment:read"]})).json()["key"]
    theirs = await http.get(f"/v1/timeline/tasks/{world.task_id}", headers={"X-API-Key": attacker_key})
    assert theirs.status_code == 404
    # an anomaly reader's key lists incidents but cannot act on them or touch the rules
    reader = {"X-API-Key": (await http.post("/v1/api-keys", headers=world.victim,
                                            json={"scopes": ["anomaly:read"]})).json()["key"]}
    assert len((await http.get("/v1/anomaly/incidents", headers=reader)).json()["items"]) == len(world.incident_ids)
    for method, path in [("POST", f"/v1/anomaly/incidents/{world.incident_ids[0]}/acknowledge"),
                         ("GET", "/v1/anomaly/rules")]:
        assert (await http.request(method, path, headers=reader)).status_code == 403, path
    # a key's id with another secret, or another tenant's id with this secret, is no key
    key_id, secret = created["key"].split(".")[1:]
    attacker_id = attacker_key.split(".")[1]
    for forged in (f"smk.{key_id}.{'A' * len(secret)}", f"smk.{attacker_id}.{secret}", f"smk.{key_id}.", "smk.."):
        assert (await http.get("/v1/webhooks", headers={"X-API-Key": forged})).status_code == 401, forged
    # revoked: refused on the very next request
    assert (await http.delete(f"/v1/api-keys/{created['key_id']}", headers=world.victim)).status_code == 204
    revoked = await http.get(f"/v1/timeline/tasks/{world.task_id}", headers=key)
    assert revoked.status_code == 401 and revoked.headers["content-type"] == "application/problem+json"
