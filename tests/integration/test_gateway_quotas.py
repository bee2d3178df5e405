"""Rate limits and quotas in Redis: exact Retry-After, per-client buckets, atomic under concurrency."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.devtools import harness, stub_backend
from gateway.settings import PlanLimits

pytestmark = pytest.mark.integration

PLANS = {
    "slow": PlanLimits(rate_per_s=0.1, burst=5, client_rate_per_s=0.1, client_burst=5, daily_quota=1000,
                       monthly_quota=10_000),
    "per-client": PlanLimits(rate_per_s=0.1, burst=100, client_rate_per_s=0.1, client_burst=2, daily_quota=1000,
                             monthly_quota=10_000),
    "twenty": PlanLimits(rate_per_s=0.001, burst=20, client_rate_per_s=0.001, client_burst=20, daily_quota=1000,
                         monthly_quota=10_000),
    "daily": PlanLimits(rate_per_s=100, burst=100, client_rate_per_s=100, client_burst=100, daily_quota=3,
                        monthly_quota=10_000),
}


class FrozenClock:
    """A still clock for the limits: they run on Redis' clock, shifted by ``offset_s`` so that they read
    ``now`` (plus the milliseconds of the round trip)."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def offset_s(self) -> float:
        return self.now - time.time()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def http(clock: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    server, port = await stub_backend.start(0)
    try:
        app = harness.build(harness.gateway_settings(backend=f"127.0.0.1:{port}", plans=PLANS), clock=clock,
                            limits_offset_s=clock.offset_s)
        async with harness.lifespan_client(app) as client:
            yield client
    finally:
        await server.stop(None)


async def _rank(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.post("/v1/assignment/rank", json={"task_id": "task-1"},
                           headers={"Authorization": f"Bearer {token}"})


async def _token(http: httpx.AsyncClient, tenant: str, plan: str) -> str:
    return await harness.token(http, await harness.create_client(http, tenant, plan=plan))


async def test_n_plus_first_request_gets_429_with_exact_retry_after(http: httpx.AsyncClient,
                                                                     clock: FrozenClock) -> None:
    token = await _token(http, "acme", "slow")
    for i in range(5):
        ok = await _rank(http, token)
        assert ok.status_code == 200, ok.text
        assert ok.headers["ratelimit-remaining"] == str(4 - i) and ok.headers["ratelimit-limit"] == "5"
    refused = await _rank(http, token)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "10"  # one token at 0.1/s
    assert refused.json()["retry_after_s"] == 10 and refused.headers["ratelimit-remaining"] == "0"
    clock.now += 9.9  # (the round trip to Redis adds milliseconds, never a tenth of a second)
    assert (await _rank(http, token)).status_code == 429
    clock.now += 0.2
    assert (await _rank(http, token)).status_code == 200


async def test_rejections_are_counted_per_plan(http: httpx.AsyncClient) -> None:
    def rejected() -> float:
        return REGISTRY.get_sample_value("gateway_rate_limited_total", {"plan": "slow"}) or 0.0

    before = rejected()
    token = await _token(http, "acme", "slow")
    codes = [(await _rank(http, token)).status_code for _ in range(7)]  # burst 5
    assert codes.count(429) == 2 and rejected() - before == 2
    scraped = (await http.get("/metrics")).text
    assert 'gateway_http_requests_total{method="POST",route="/v1/assignment/rank",status="429"}' in scraped


async def test_client_bucket_within_a_tenant(http: httpx.AsyncClient) -> None:
    first, second = await _token(http, "acme", "per-client"), await _token(http, "acme", "per-client")
    assert [(await _rank(http, first)).status_code for _ in range(3)] == [200, 200, 429]
    assert (await _rank(http, second)).status_code == 200  # another client of the same tenant
    other_tenant = await _token(http, "globex", "slow")
    assert (await http.get("/v1/timeline/tasks/task-9", headers={"Authorization": f"Bearer {other_tenant}"})
            ).status_code == 200


async def test_daily_quota_retry_after_is_the_next_utc_midnight(http: httpx.AsyncClient, clock: FrozenClock) -> None:
    token = await _token(http, "acme", "daily")
    assert [(await _rank(http, token)).status_code for _ in range(4)] == [200, 200, 200, 429]
    refused = await _rank(http, token)
    day = datetime.fromtimestamp(clock.now, UTC)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
    assert refused.headers["retry-after"] == str(math.ceil(midnight.timestamp() - clock.now))


async def test_counts_are_atomic_under_concurrency(http: httpx.AsyncClient) -> None:
    tokens = [await _token(http, "acme", "twenty") for _ in range(5)]  # five clients, one tenant bucket
    responses = await asyncio.gather(*(_rank(http, tokens[i % 5]) for i in range(50)))
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 20 and codes.count(429) == 30


async def test_unreachable_backend_is_503_problem() -> None:
    app = harness.build(harness.gateway_settings(backend="127.0.0.1:1"))
    async with harness.lifespan_client(app) as http:
        token = await harness.token(http, await harness.create_client(http, "acme"))
        response = await _rank(http, token)
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert response.json()["type"].endswith("/unavailable")
