"""Rate limits (token buckets) and quotas (per tenant, UTC day and month), checked and charged by ONE Lua
script (:mod:`mesh.limits`, shared with the nlp service's LLM budgets) so that concurrent requests can never
overspend.

Time is Redis' own (``TIME`` inside the script), never the caller's: replicas whose clocks disagree still
share one bucket refill and one day. The same script serves the plans (per tenant and per client, quota
charged), the management routes (per client and per source, quota only checked: a tenant out of quota
cannot mint keys) and the token endpoint (per client id and per source, before anyone is authenticated).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

from gateway.auth.principal import Principal
from gateway.settings import GatewaySettings, PlanLimits, RouteLimit
from mesh.limits import AtomicLimits, Bucket, Quota

QuotaMode = Literal["none", "check", "charge"]


@dataclass(frozen=True)
class Decision:
    """The outcome of one check; ``headers`` go on every response of a limited route."""

    allowed: bool
    retry_after_s: int
    limit: int
    remaining: int
    reset_s: int
    window_s: int
    daily_remaining: int | None
    monthly_remaining: int | None

    @property
    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset_s), "RateLimit-Policy": f"{self.limit};w={self.window_s}"}
        if self.daily_remaining is not None:
            headers["X-Quota-Remaining-Day"] = str(self.daily_remaining)
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


class RateLimiter:
    """Every limit of one gateway deployment (its Redis prefix), on Redis' clock.

    ``test_offset_s`` is added to Redis' time: always 0 in production, it lets tests move time forward
    without sleeping (the gateway's own clock never reaches the limits).
    """

    def __init__(self, redis: Redis[bytes], prefix: str, settings: GatewaySettings,
                 test_offset_s: Callable[[], float] = lambda: 0.0) -> None:
        self._r = redis
        self._p = prefix + "rl:"
        self._plans = settings.plans
        self._default = settings.default_plan
        self._access = settings.access_limits
        self._limits = AtomicLimits(redis, test_offset_s)

    def plan(self, who: Principal) -> PlanLimits:
        return self._plans.get(who.plan) or self._plans[self._default]

    async def check(self, who: Principal, cost: int = 1) -> Decision:
        """A capability call: the tenant's and the client's buckets, the tenant's quota charged."""
        plan, t = self.plan(who), who.tenant_id
        buckets = [(f"{self._p}{{{t}}}:bucket", RouteLimit(rate_per_s=plan.rate_per_s, burst=plan.burst)),
                   (f"{self._p}{{{t}}}:client:{who.client_id}",
                    RouteLimit(rate_per_s=plan.client_rate_per_s, burst=plan.client_burst))]
        return await self._run(buckets, cost, "charge", plan, t)

    async def check_management(self, who: Principal | None, source: str) -> Decision:
        """An API-key, webhook or admin call (``who`` None): per client and per source; the tenant's
        quota must not be spent (checked, not charged)."""
        source_bucket = (f"{self._p}src:{source}:manage", self._access.manage_per_source)
        if who is None:
            return await self._run([source_bucket], 1, "none")
        t = who.tenant_id
        client = (f"{self._p}{{{t}}}:manage:{who.client_id}", self._access.manage_per_client)
        return await self._run([client, source_bucket], 1, "check", self.plan(who), t)

    async def check_token(self, client_id: str, source: str) -> Decision:
        """A token request, before the secret is checked: per client id asked for and per source."""
        return await self._run([(f"{self._p}token:{client_id}", self._access.token_per_client),
                                (f"{self._p}src:{source}:token", self._access.token_per_source)], 1, "none")

    async def _run(self, buckets: list[tuple[str, RouteLimit]], cost: int, mode: QuotaMode,
                   plan: PlanLimits | None = None, tenant: str | None = None) -> Decision:
        quota = None
        if mode != "none":
            assert plan is not None
            quota = Quota(f"{self._p}{{{tenant}}}:quota", plan.daily_quota, plan.monthly_quota, cost, mode)
        verdict = await self._limits.acquire([Bucket(key, limit.rate_per_s, limit.burst, cost)
                                              for key, limit in buckets], quota)
        first = buckets[0][1]
        left = verdict.bucket_tokens_left or 0
        return Decision(allowed=verdict.allowed, retry_after_s=max(1, math.ceil(verdict.retry_after_s)),
                        limit=first.burst, remaining=max(0, left),
                        reset_s=max(0, math.ceil((first.burst - left) / first.rate_per_s)),
                        window_s=max(1, math.ceil(first.burst / first.rate_per_s)),
                        daily_remaining=verdict.day_left, monthly_remaining=verdict.month_left)
