"""Gateway pieces without I/O: settings, tokens, signatures, SSRF guard, conversions, error shape."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from gateway import create_app
from gateway.auth.keys import KeyRing
from gateway.devtools.harness import gateway_settings, new_signing_key
from gateway.problems import ProblemError
from gateway.schemas.assignment import RankRequest
from gateway.settings import AuthSettings, GatewaySettings, SigningKey
from gateway.webhooks import signing
from gateway.webhooks.models import EventType
from gateway.webhooks.ssrf import UnsafeTarget, check_target, is_public
from mesh.events import TopicRegistry

ROOT = Path(__file__).resolve().parents[3]


def test_settings_refuse_placeholder_secrets() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        AuthSettings(admin_token=SecretStr("changeme"))
    with pytest.raises(ValidationError, match="placeholder"):
        SigningKey(kid="k", private_key_pem=SecretStr("changeme"))
    with pytest.raises(ValidationError, match="signing_keys"):
        GatewaySettings(environment="production")
    with pytest.raises(ValidationError, match="active_kid"):
        AuthSettings(signing_keys=[new_signing_key("a")], active_kid="b")


def _ring(auth: AuthSettings, clock: float | None = None) -> KeyRing:
    return KeyRing.from_settings(auth, (lambda: clock) if clock is not None else time.time)


def _issue(ring: KeyRing) -> str:
    issued = ring.issue(tenant_id="acme", client_id="cl_1", scopes=frozenset({"assignment:read"}), plan="free")
    return issued.access_token


def test_token_roundtrip_and_rotation_by_kid() -> None:
    k1, k2 = new_signing_key("k1"), new_signing_key("k2")
    old = _ring(AuthSettings(signing_keys=[k1]))
    rotated = _ring(AuthSettings(signing_keys=[k1, k2], active_kid="k2"))
    principal = rotated.verify(_issue(old))  # issued before the rotation, still valid
    assert (principal.tenant_id, principal.client_id) == ("acme", "cl_1")
    assert principal.scopes == frozenset({"assignment:read"})
    assert rotated.verify(_issue(rotated)).tenant_id == "acme"
    assert {k["kid"] for k in rotated.jwks()["keys"]} == {"k1", "k2"}
    retired = _ring(AuthSettings(signing_keys=[k2]))
    with pytest.raises(ProblemError, match="unknown signing key"):
        retired.verify(_issue(old))


@pytest.mark.parametrize("case", ["expired", "audience", "issuer", "signature", "garbage"])
def test_bad_tokens_are_401(case: str) -> None:
    key = new_signing_key("k1")
    ring = _ring(AuthSettings(signing_keys=[key]))
    if case == "expired":
        token = _issue(_ring(AuthSettings(signing_keys=[key]), clock=time.time() - 3600))
    elif case == "audience":
        token = _issue(_ring(AuthSettings(signing_keys=[key], audience="someone-else")))
    elif case == "issuer":
        token = _issue(_ring(AuthSettings(signing_keys=[key], issuer="https://evil.example")))
    elif case == "signature":
        token = _issue(_ring(AuthSettings(signing_keys=[new_signing_key("k1")])))  # same kid, other key
    else:
        token = "not.a.jwt"
    with pytest.raises(ProblemError) as info:
        ring.verify(token)
    assert info.value.status == 401


def test_signature_verifies_and_rejects_tampering_and_old_timestamps() -> None:
    now = 1_700_000_000
    sig = signing.sign("whsec_x", now, b'{"a":1}')
    assert signing.verify("whsec_x", str(now), b'{"a":1}', sig, now=now + 10)
    assert not signing.verify("whsec_x", str(now), b'{"a":2}', sig, now=now)
    assert not signing.verify("whsec_y", str(now), b'{"a":1}', sig, now=now)
    assert not signing.verify("whsec_x", str(now), b'{"a":1}', sig, now=now + 301)


async def test_ssrf_guard() -> None:
    for url in ("https://127.0.0.1/x", "https://10.0.0.8/x", "https://169.254.169.254/latest", "https://[::1]/",
                "https://localhost/x", "https://[::ffff:192.168.0.1]/", "http://93.184.215.14/"):
        with pytest.raises(UnsafeTarget):
            await check_target(url, allow_private=False)
    await check_target("http://127.0.0.1:9/x", allow_private=True)
    assert is_public("93.184.215.14") and not is_public("192.168.1.1") and not is_public("::1")


def test_event_types_match_the_topic_registry() -> None:
    registry = TopicRegistry()
    declared = {t for name in gateway_settings().webhooks.topics for t in registry.spec(name).event_types}
    assert declared == set(EventType.__args__)  # type: ignore[attr-defined]


def test_rank_request_needs_exactly_one_task_and_no_tenant() -> None:
    with pytest.raises(ValidationError):
        RankRequest.model_validate({})
    with pytest.raises(ValidationError):
        RankRequest.model_validate({"task_id": "t1", "task": {"task_id": "t1", "title": "x"}})
    with pytest.raises(ValidationError):
        RankRequest.model_validate({"task_id": "t1", "tenant_id": "globex"})
    proto = RankRequest.model_validate({"task": {"task_id": "t1", "title": "x", "priority": "high"}}).to_proto("acme")
    assert proto.tenant_id == "acme" and proto.payload.title == "x" and proto.k == 5


def test_served_openapi_equals_the_checked_in_file() -> None:
    served = create_app(gateway_settings()).openapi()
    checked_in = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert served == checked_in, "regenerate with: python -m gateway openapi > docs/openapi.json"


async def test_errors_are_problem_details_without_internals() -> None:
    app = create_app(gateway_settings())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            too_big = await http.post("/v1/assignment/rank", content=b"x" * 70_000,
                                      headers={"content-type": "application/json"})
            missing = await http.get("/no/such/route")
            unauth = await http.post("/v1/assignment/rank", json={"task_id": "t1"})
    assert too_big.status_code == 413 and too_big.headers["content-type"] == "application/problem+json"
    assert missing.status_code == 404 and missing.json()["type"].endswith("/not-found")
    assert unauth.status_code == 401 and "Bearer" in unauth.headers["www-authenticate"]
    for response in (too_big, missing, unauth):
        assert {"type", "title", "status"} <= set(response.json())
        assert "Traceback" not in response.text
