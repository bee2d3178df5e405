"""Limits that must hold under concurrency and across replicas, against the real Redis: the per-tenant
subscription limit, the token endpoint (per client id and per source, wrong secrets included), the
management routes, and quotas counted on Redis' clock whatever the replicas' clocks say."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import httpx
import pytest

from gateway.devtools import harness, stub_backend
from gateway.settings import AccessLimits, GatewaySettings, PlanLimits, RouteLimit

pytestmark = pytest.mark.integration

WIDE = RouteLimit(rate_per_s=1000, burst=1000)
SLOW = 0.001  # refill per second: nothing comes back during a test
PLANS = {
    "daily": PlanLimits(rate_per_s=100, burst=100, client_rate_per_s=100, client_burst=100, daily_quota=3,
                        monthly_quota=10_000),
    "slow": PlanLimits(rate_per_s=SLOW, burst=5, client_rate_per_s=SLOW, client_burst=5, daily_quota=1000,
                       monthly_quota=10_000),
}


def _settings(backend: str = "", **limits: RouteLimit) -> GatewaySettings:
    settings = harness.gateway_settings(backend=backend, plans=PLANS, max_subscriptions_per_tenant=5)
    settings.access_limits = AccessLimits(**{"token_per_client": WIDE, "token_per_source": WIDE,
                                             "manage_per_client": WIDE, "manage_per_source": WIDE, **limits})
    return settings


@asynccontextmanager
async def _gateway(settings: GatewaySettings, clock: Callable[[], float] = time.time,
                   source: str = "127.0.0.1") -> AsyncIterator[httpx.AsyncClient]:
    app = harness.build(settings, clock=clock)
    async with harness.lifespan_client(app) as http:
        http._transport.client = (source, 40000)  # type: ignore[attr-defined]
        yield http


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_429(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/too-many-requests") and body["retry_after_s"] == int(response.headers["retry-after"])


async def test_subscription_limit_holds_under_concurrent_creates() -> None:
    async with _gateway(_settings()) as http:
        auth = _bearer(await harness.token(http, await harness.create_client(http, "acme")))
        body = {"url": "http://127.0.0.1:9/hook", "event_types": ["alert"]}
        responses = await asyncio.gather(*(http.post("/v1/webhooks", json=body, headers=auth) for _ in range(30)))
        codes = sorted(r.status_code for r in responses)
        assert codes == [201] * 5 + [409] * 25
        assert len((await http.get("/v1/webhooks", headers=auth)).json()) == 5


def _form(client_id: str, secret: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}


async def test_token_endpoint_is_limited_per_client_id_wrong_secrets_included() -> None:
    async with _gateway(_settings(token_per_client=RouteLimit(rate_per_s=SLOW, burst=3))) as http:
        acme = await harness.create_client(http, "acme")
        wrong = [await http.post("/oauth/token", data=_form(acme.client_id, "guess")) for _ in range(3)]
        assert [r.status_code for r in wrong] == [401] * 3
        _assert_429(await http.post("/oauth/token", data=_form(acme.client_id, "guess")))
        # the right secret waits too: guessing cannot go on under cover of the real client's traffic
        _assert_429(await http.post("/oauth/token", data=_form(acme.client_id, acme.client_secret)))
        other = await harness.create_client(http, "acme")
        assert (await http.post("/oauth/token", data=_form(other.client_id, other.client_secret))).status_code == 200


async def test_token_endpoint_is_limited_per_source_address() -> None:
    settings = _settings(token_per_source=RouteLimit(rate_per_s=SLOW, burst=4))
    async with _gateway(settings, source="203.0.113.7") as http:
        codes = [(await http.post("/oauth/token", data=_form(f"cl_guess{i}", "x"))).status_code for i in range(4)]
        assert codes == [401] * 4
        _assert_429(await http.post("/oauth/token", data=_form("cl_guess9", "x")))
        http._transport.client = ("198.51.100.20", 40000)  # type: ignore[attr-defined]
        assert (await http.post("/oauth/token", data=_form("cl_guess9", "x"))).status_code == 401


async def test_api_key_and_webhook_routes_are_limited_per_client() -> None:
    async with _gateway(_settings(manage_per_client=RouteLimit(rate_per_s=SLOW, burst=3))) as http:
        auth = _bearer(await harness.token(http, await harness.create_client(http, "acme")))
        assert (await http.post("/v1/api-keys", json={"scopes": ["assignment:read"]}, headers=auth)).status_code == 201
        assert (await http.get("/v1/api-keys", headers=auth)).status_code == 200
        assert (await http.get("/v1/webhooks", headers=auth)).status_code == 200
        _assert_429(await http.post("/v1/api-keys", json={"scopes": ["assignment:read"]}, headers=auth))
        _assert_429(await http.post("/v1/webhooks", headers=auth,
                                    json={"url": "http://127.0.0.1:9/h", "event_types": ["alert"]}))
        other = _bearer(await harness.token(http, await harness.create_client(http, "acme")))
        assert (await http.get("/v1/webhooks", headers=other)).status_code == 200


async def test_management_and_admin_routes_are_limited_per_source() -> None:
    async with _gateway(_settings(manage_per_source=RouteLimit(rate_per_s=SLOW, burst=4))) as http:
        auth = _bearer(await harness.token(http, await harness.create_client(http, "acme")))  # 1 (admin)
        for _ in range(3):
            assert (await http.get("/v1/webhooks", headers=auth)).status_code == 200  # 2..4
        _assert_429(await http.get("/v1/api-keys", headers=auth))
        _assert_429(await http.post("/v1/admin/clients", headers=_bearer(harness.ADMIN_TOKEN),
                                    json={"tenant_id": "acme", "scopes": ["assignment:read"]}))
        http._transport.client = ("198.51.100.20", 40000)  # type: ignore[attr-defined]
        assert (await http.get("/v1/webhooks", headers=auth)).status_code == 200


async def test_a_tenant_out_of_quota_cannot_mint_keys() -> None:
    server, port = await stub_backend.start(0)
    try:
        async with _gateway(_settings(backend=f"127.0.0.1:{port}")) as http:
            auth = _bearer(await harness.token(http, await harness.create_client(http, "acme", plan="daily")))
            codes = [(await http.post("/v1/assignment/rank", json={"task_id": "task-1"}, headers=auth)).status_code
                     for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            _assert_429(await http.post("/v1/api-keys", json={"scopes": ["assignment:read"]}, headers=auth))
    finally:
        await server.stop(None)


async def test_replicas_with_skewed_clocks_agree_on_quotas_and_buckets() -> None:
    """Three replicas of one deployment (one Redis namespace): honest, three days ahead, three days behind."""
    server, port = await stub_backend.start(0)
    settings = _settings(backend=f"127.0.0.1:{port}")
    day = 86_400.0
    try:
        async with AsyncExitStack() as stack:
            honest = await stack.enter_async_context(_gateway(settings))
            ahead = await stack.enter_async_context(_gateway(settings, clock=lambda: time.time() + 3 * day))
            behind = await stack.enter_async_context(_gateway(settings, clock=lambda: time.time() - 3 * day))

            async def rank(http: httpx.AsyncClient, token: str, task: str = "task-1") -> int:
                response = await http.post("/v1/assignment/rank", json={"task_id": task}, headers=_bearer(token))
                return response.status_code

            # tokens come from the honest replica (a token's own times are not what this test is about)
            daily = await harness.token(honest, await harness.create_client(honest, "acme", plan="daily"))
            assert [await rank(ahead, daily), await rank(behind, daily), await rank(ahead, daily)] == [200] * 3
            assert [await rank(behind, daily), await rank(ahead, daily)] == [429, 429]  # one day, one count

            slow = await harness.token(honest, await harness.create_client(honest, "globex", plan="slow"))
            assert [await rank(behind, slow, "task-9") for _ in range(5)] == [200] * 5
            assert await rank(ahead, slow, "task-9") == 429  # six days "later" on its clock, but no refill on Redis'
    finally:
        await server.stop(None)
