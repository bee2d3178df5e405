"""Rate limits (token buckets) and quotas (per tenant, UTC day and month), checked and charged by ONE Lua
script so that concurrent requests can never overspend.

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

# KEYS: n token buckets, then (quota mode > 0) the tenant's quota hash
# ARGV: test offset ms, cost, quota mode (0 none, 1 check, 2 charge), day limit, month limit, n,
#       then rate/s and burst of each bucket
# Returns {allowed, retry_after_ms, first bucket's tokens left, its full-again ms, day left, month left}
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local cost, mode = tonumber(ARGV[2]), tonumber(ARGV[3])
local day_limit, month_limit, n = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local tokens, wait = {}, 0
for i = 1, n do
  local rate, burst = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tk, ts = tonumber(v[1]), tonumber(v[2])
  if tk == nil or ts == nil then tk = burst else tk = math.min(burst, tk + math.max(0, now - ts) * rate / 1000) end
  tokens[i] = tk
  if tk < cost then wait = math.max(wait, math.ceil((cost - tk) * 1000 / rate)) end
end
local day_left, month_left, day, month, day_n, month_n, month_reset = -1, -1, 0, 0, 0, 0, 0
if mode > 0 then
  -- the UTC civil date of Redis' day number (H. Hinnant's days -> civil algorithm)
  day = math.floor(now / 86400000)
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  local lengths = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
  local length = lengths[m]
  if m == 2 and ((y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0) then length = 29 end
  month = y * 100 + m
  month_reset = (day - d + 1 + length) * 86400000
  local q = redis.call('HMGET', KEYS[n + 1], 'day', 'day_n', 'month', 'month_n')
  if tonumber(q[1]) == day then day_n = tonumber(q[2]) end
  if tonumber(q[3]) == month then month_n = tonumber(q[4]) end
  local need = (mode == 2) and cost or 1
  if day_n + need > day_limit then wait = math.max(wait, (day + 1) * 86400000 - now) end
  if month_n + need > month_limit then wait = math.max(wait, month_reset - now) end
  day_left, month_left = day_limit - day_n, month_limit - month_n
end
local rate1, burst1 = tonumber(ARGV[7]), tonumber(ARGV[8])
if wait > 0 then
  return {0, wait, math.floor(tokens[1]), math.ceil((burst1 - tokens[1]) * 1000 / rate1), day_left, month_left}
end
for i = 1, n do
  local rate, burst = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  tokens[i] = tokens[i] - cost
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst * 1000 / rate) + 1000)
end
if mode == 2 then
  redis.call('HSET', KEYS[n + 1], 'day', day, 'day_n', day_n + cost, 'month', month, 'month_n', month_n + cost)
  redis.call('PEXPIREAT', KEYS[n + 1], month_reset + 3600000)
  day_left, month_left = day_left - cost, month_left - cost
end
return {1, 0, math.floor(tokens[1]), math.ceil((burst1 - tokens[1]) * 1000 / rate1), day_left, month_left}
"""

QuotaMode = Literal["none", "check", "charge"]
_MODES: dict[QuotaMode, int] = {"none": 0, "check": 1, "charge": 2}


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
        self._offset = test_offset_s
        self._script = redis.register_script(_LUA)

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
        keys = [key for key, _ in buckets] + ([f"{self._p}{{{tenant}}}:quota"] if mode != "none" else [])
        args: list[float | int] = [int(self._offset() * 1000), cost, _MODES[mode],
                                   plan.daily_quota if plan else 0, plan.monthly_quota if plan else 0, len(buckets)]
        for _, limit in buckets:
            args += [limit.rate_per_s, limit.burst]
        allowed, wait_ms, remaining, reset_ms, day_left, month_left = (
            int(v) for v in await self._script(keys=keys, args=args))
        first = buckets[0][1]
        return Decision(allowed=bool(allowed), retry_after_s=max(1, math.ceil(wait_ms / 1000)), limit=first.burst,
                        remaining=max(0, remaining), reset_s=max(0, math.ceil(reset_ms / 1000)),
                        window_s=max(1, math.ceil(first.burst / first.rate_per_s)),
                        daily_remaining=max(0, day_left) if mode != "none" else None,
                        monthly_remaining=max(0, month_left) if mode != "none" else None)
