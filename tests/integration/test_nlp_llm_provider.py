"""The LLM pipeline against a local OpenAI-compatible test server (aiohttp on 127.0.0.1, random port) and
the local Redis: what is SENT (no PII leaves), cache hits, budgets and rate limits stopping calls, retries
and fallback to the local provider on 5xx and timeouts. The server's answers are canned: nothing here
says anything about generation quality."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from redis.asyncio import Redis

from mesh.config import MeshSettings
from mesh.limits import AtomicLimits, Bucket, Quota
from mesh.retry import RetryPolicy
from services.nlp.text import (
    DraftContext,
    LLMPipeline,
    LLMSettings,
    SummaryContext,
    load_template,
)

PEOPLE = ("Ana Lopez", "Tomas Berg")
PII = {"email": "ana.lopez@example.com", "phone": "+49 30 1234567", "card": "4111 1111 1111 1111",
       "iban": "DE89 3704 0044 0532 0130 00", "ip": "10.20.30.40", "secret": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
       "name": "Ana Lopez", "given": "Tomas"}
TRANSCRIPT = (f"Ana Lopez: Mail me at {PII['email']} or call {PII['phone']} about the invoice for the new plan.",
              f"Tomas Berg: The card {PII['card']} and the IBAN {PII['iban']} are on file for the billing system.",
              f"Ana Lopez: The staging box {PII['ip']} still uses token {PII['secret']}, please rotate it soon.",
              "Tomas Berg: Tomas will review the billing dashboard by Friday and report back to the team.")


@dataclass
class FakeOpenAI:
    """Records every request body; answers per ``mode``: ok, error (HTTP 500) or slow (sleeps)."""

    mode: str = "ok"
    reply: str = "Summary for <PERSON_1>: rotate the token of <IP_1>."
    bodies: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        if self.mode == "error":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if self.mode == "slow":
            await asyncio.sleep(1.0)
        return web.json_response({
            "id": "cmpl-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.reply}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 10, "total_tokens": 60}})


@pytest.fixture
async def server() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield fake, f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


@pytest.fixture
async def redis(settings: MeshSettings) -> AsyncIterator[Redis[bytes]]:
    client: Redis[bytes] = Redis.from_url(settings.redis.url)
    yield client
    await client.aclose()  # type: ignore[attr-defined]


def pipeline(redis: Redis[bytes], url: str | None, **overrides: Any) -> LLMPipeline:
    options = {"base_url": url, "model": "test-model", "timeout_s": 0.5, "max_attempts": 2, **overrides}
    return LLMPipeline(LLMSettings(**options), redis, f"it_llm_{uuid.uuid4().hex[:10]}",
                       retry=RetryPolicy(max_attempts=options["max_attempts"], initial_backoff_s=0.01))


def summary() -> SummaryContext:
    return SummaryContext(title="Billing sync with Ana Lopez", transcript=TRANSCRIPT)


async def test_no_pii_is_sent_and_the_answer_is_unmasked(server: tuple[FakeOpenAI, str], redis: Redis[bytes]) -> None:
    fake, url = server
    result = await pipeline(redis, url).generate("t1", load_template("meeting_summary"), summary(), PEOPLE)
    assert result.source == "provider"
    assert len(fake.bodies) == 1
    sent = json.dumps(fake.bodies[0])
    for kind, value in PII.items():
        assert value not in sent, f"{kind} left the process"
    assert "Berg" not in sent and "<PERSON_1>" in sent and "<EMAIL_1>" in sent
    assert result.text == f"Summary for Ana Lopez: rotate the token of {PII['ip']}."
    assert set(result.masked) == {"EMAIL", "PHONE", "CARD", "IBAN", "IP", "SECRET", "PERSON"}
    assert fake.bodies[0]["model"] == "test-model" and fake.bodies[0]["max_tokens"] == 300


async def test_a_repeated_call_is_answered_from_the_cache(server: tuple[FakeOpenAI, str], redis: Redis[bytes]) -> None:
    fake, url = server
    llm = pipeline(redis, url)
    first = await llm.generate("t1", load_template("meeting_summary"), summary(), PEOPLE)
    second = await llm.generate("t1", load_template("meeting_summary"), summary(), PEOPLE)
    other_tenant = await llm.generate("t2", load_template("meeting_summary"), summary(), PEOPLE)
    assert (first.source, second.source, other_tenant.source) == ("provider", "cache", "provider")
    assert second.text == first.text
    assert len(fake.bodies) == 2


async def test_the_token_budget_stops_calls(server: tuple[FakeOpenAI, str], redis: Redis[bytes]) -> None:
    fake, url = server
    # one call reserves its prompt estimate + 350 max tokens; the provider reports 60 used, the rest is
    # given back, so the budget admits calls while 60 * n + the next reservation fits
    llm = pipeline(redis, url, daily_tokens=1000, burst=100, requests_per_s=100)
    results = []
    for i in range(12):
        context = DraftContext(title=f"Task {i}", project="Billing", similar=("Fix the invoice export.",))
        results.append(await llm.generate("t1", load_template("task_description_draft"), context, PEOPLE))
    sources = [r.source for r in results]
    assert "provider" in sources and sources[-1] == "local" and results[-1].reason == "budget"
    assert len(fake.bodies) == sources.count("provider") < 12
    assert sources == sorted(sources, key=lambda s: s == "local")  # once spent, it stays spent today
    assert "## Goal" in results[-1].text


async def test_the_request_rate_stops_calls(server: tuple[FakeOpenAI, str], redis: Redis[bytes]) -> None:
    fake, url = server
    llm = pipeline(redis, url, burst=2, requests_per_s=0.01)
    results = [await llm.generate("t1", load_template("task_description_draft"),
                                  DraftContext(title=f"T{i}", project="P", similar=()), ()) for i in range(4)]
    assert [r.source for r in results] == ["provider", "provider", "local", "local"]
    assert results[-1].reason == "rate" and len(fake.bodies) == 2


async def test_5xx_is_retried_then_falls_back(server: tuple[FakeOpenAI, str], redis: Redis[bytes]) -> None:
    fake, url = server
    fake.mode = "error"
    result = await pipeline(redis, url, max_attempts=3).generate(
        "t1", load_template("meeting_summary"), summary(), PEOPLE)
    assert result.source == "local" and "HTTP 500" in result.reason
    assert len(fake.bodies) == 3
    assert PII["email"] in result.text  # the local summary of the masked transcript, unmasked
    assert "<PERSON" not in result.text and "<EMAIL" not in result.text


async def test_a_timeout_falls_back_and_is_not_cached(server: tuple[FakeOpenAI, str], redis: Redis[bytes]) -> None:
    fake, url = server
    fake.mode = "slow"
    llm = pipeline(redis, url, timeout_s=0.3, max_attempts=2)
    result = await llm.generate("t1", load_template("meeting_summary"), summary(), PEOPLE)
    assert result.source == "local" and "within 0.3 s" in result.reason
    assert len(fake.bodies) == 2
    fake.mode = "ok"
    again = await llm.generate("t1", load_template("meeting_summary"), summary(), PEOPLE)
    assert again.source == "provider"


async def test_no_provider_configured_answers_locally(redis: Redis[bytes]) -> None:
    result = await pipeline(redis, None).generate("t1", load_template("meeting_summary"), summary(), PEOPLE)
    assert result.source == "local" and result.reason == "no provider"
    assert PII["email"] in result.text and "<EMAIL" not in result.text


async def test_limits_are_atomic_under_concurrency(redis: Redis[bytes]) -> None:
    limits = AtomicLimits(redis)
    key = f"it_limits_{uuid.uuid4().hex[:10]}"
    quota = Quota(f"{key}:q", daily=1000, monthly=1000, cost=100)
    verdicts = await asyncio.gather(*[limits.acquire([Bucket(f"{key}:b", 0.001, 50)], quota) for _ in range(30)])
    assert sum(v.allowed for v in verdicts) == 10  # the quota (1000 / 100), never more under a race
    refused = [v for v in verdicts if not v.allowed]
    assert all(v.retry_after_s > 0 for v in refused)
    await limits.refund(quota, 250)
    assert sum([(await limits.acquire([], quota)).allowed for _ in range(3)]) == 2


async def test_a_spent_daily_budget_comes_back_the_next_day(redis: Redis[bytes]) -> None:
    offset = [0.0]
    limits = AtomicLimits(redis, test_offset_s=lambda: offset[0])
    quota = Quota(f"it_limits_{uuid.uuid4().hex[:10]}:q", daily=300, monthly=10_000, cost=200)
    assert (await limits.acquire([], quota)).allowed
    refused = await limits.acquire([], quota)
    assert not refused.allowed and 0 < refused.retry_after_s <= 86400 and refused.day_left == 100
    offset[0] = refused.retry_after_s + 1
    again = await limits.acquire([], quota)
    assert again.allowed and again.day_left == 100 and again.month_left is not None
