"""Rate limits (token buckets, per tenant and per client) and quotas (per tenant, UTC day and month),
checked and charged by ONE Lua script so that concurrent requests can never overspend."""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis.asyncio import Redis

from gateway.auth.principal import Principal
from gateway.settings import PlanLimits

# KEYS: tenant bucket, client bucket, day counter, month counter
# ARGV: now_ms, cost, tenant rate/s, tenant burst, client rate/s, client burst, day limit, month limit,
#       day reset (ms epoch), month reset (ms epoch)
# Returns {allowed, retry_after_ms, tenant tokens left, tenant reset ms, day left, month left}
_LUA = """
local now = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local function refill(key, rate, burst)
  local v = redis.call('HMGET', key, 'tokens', 'ts')
  local tokens, ts = tonumber(v[1]), tonumber(v[2])
  if tokens == nil or ts == nil then return burst end
  return math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
end
local function wait_ms(tokens, rate)
  if tokens >= cost then return 0 end
  return math.ceil((cost - tokens) * 1000 / rate)
end
local t_rate, t_burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local c_rate, c_burst = tonumber(ARGV[5]), tonumber(ARGV[6])
local day_limit, month_limit = tonumber(ARGV[7]), tonumber(ARGV[8])
local day_reset, month_reset = tonumber(ARGV[9]), tonumber(ARGV[10])
local tt = refill(KEYS[1], t_rate, t_burst)
local ct = refill(KEYS[2], c_rate, c_burst)
local day = tonumber(redis.call('GET', KEYS[3]) or '0')
local month = tonumber(redis.call('GET', KEYS[4]) or '0')
local wait = math.max(wait_ms(tt, t_rate), wait_ms(ct, c_rate))
if day + cost > day_limit then wait = math.max(wait, day_reset - now) end
if month + cost > month_limit then wait = math.max(wait, month_reset - now) end
if wait > 0 then
  return {0, wait, math.floor(tt), math.ceil((t_burst - tt) * 1000 / t_rate), day_limit - day, month_limit - month}
end
tt, ct = tt - cost, ct - cost
redis.call('HSET', KEYS[1], 'tokens', tostring(tt), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(t_burst * 1000 / t_rate) + 1000)
redis.call('HSET', KEYS[2], 'tokens', tostring(ct), 'ts', now)
redis.call('PEXPIRE', KEYS[2], math.ceil(c_burst * 1000 / c_rate) + 1000)
redis.call('INCRBY', KEYS[3], cost)
redis.call('PEXPIREAT', KEYS[3], day_reset + 3600000)
redis.call('INCRBY', KEYS[4], cost)
redis.call('PEXPIREAT', KEYS[4], month_reset + 3600000)
return {1, 0, math.floor(tt), math.ceil((t_burst - tt) * 1000 / t_rate), day_limit - day - cost,
        month_limit - month - cost}
"""


@dataclass(frozen=True)
class Decision:
    """The outcome of one check; ``headers`` go on every response of a limited route."""

    allowed: bool
    retry_after_s: int
    limit: int
    remaining: int
    reset_s: int
    window_s: int
    daily_remaining: int
    monthly_remaining: int

    @property
    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset_s), "RateLimit-Policy": f"{self.limit};w={self.window_s}",
                   "X-Quota-Remaining-Day": str(self.daily_remaining)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


def _resets(now: float) -> tuple[int, int]:
    """Millisecond epochs of the next UTC midnight and the next first-of-month."""
    dt = datetime.fromtimestamp(now, UTC)
    midnight = datetime(dt.year, dt.month, dt.day, tzinfo=UTC) + timedelta(days=1)
    days = calendar.monthrange(dt.year, dt.month)[1]
    month = datetime(dt.year, dt.month, 1, tzinfo=UTC) + timedelta(days=days)
    return int(midnight.timestamp() * 1000), int(month.timestamp() * 1000)


class RateLimiter:
    def __init__(self, redis: Redis[bytes], prefix: str, plans: dict[str, PlanLimits], default_plan: str,
                 clock: Callable[[], float]) -> None:
        self._r = redis
        self._p = prefix + "rl:"
        self._plans = plans
        self._default = default_plan
        self._clock = clock
        self._script = redis.register_script(_LUA)

    async def check(self, who: Principal, cost: int = 1) -> Decision:
        plan = self._plans.get(who.plan) or self._plans[self._default]
        now = self._clock()
        day_reset, month_reset = _resets(now)
        dt = datetime.fromtimestamp(now, UTC)
        t = who.tenant_id
        keys = [f"{self._p}{{{t}}}:bucket", f"{self._p}{{{t}}}:client:{who.client_id}",
                f"{self._p}{{{t}}}:day:{dt:%Y%m%d}", f"{self._p}{{{t}}}:month:{dt:%Y%m}"]
        args = [int(now * 1000), cost, plan.rate_per_s, plan.burst, plan.client_rate_per_s, plan.client_burst,
                plan.daily_quota, plan.monthly_quota, day_reset, month_reset]
        allowed, wait_ms, remaining, reset_ms, day_left, month_left = (
            int(v) for v in await self._script(keys=keys, args=args))
        return Decision(allowed=bool(allowed), retry_after_s=max(1, math.ceil(wait_ms / 1000)), limit=plan.burst,
                        remaining=max(0, remaining), reset_s=max(0, math.ceil(reset_ms / 1000)),
                        window_s=max(1, math.ceil(plan.burst / plan.rate_per_s)), daily_remaining=max(0, day_left),
                        monthly_remaining=max(0, month_left))
