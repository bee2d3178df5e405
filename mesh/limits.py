"""Atomic budgets in Redis: token buckets (rates) and per-tenant quotas per UTC day and month, checked and
charged by ONE Lua script, so concurrent callers (any number of replicas) can never overspend.

Time is Redis' own (``TIME`` inside the script), never a caller's clock. Each bucket has its own cost
(e.g. 1 request) and the quota its own (e.g. the LLM tokens a call may use), so one call can hold a request
rate and a token budget at once: nothing is charged unless every bucket and the quota allow it. A caller
that reserved more than it used gives the rest back with :meth:`AtomicLimits.refund` (same script, same
day/month). Keys that share a tenant should share a hash tag (``{tenant}``) so a Redis Cluster keeps them
on one slot.

Users: the gateway's plans, management and token-endpoint limits (``gateway/ratelimit.py``) and the nlp
service's LLM pipeline (per-tenant request rate + token budget).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

# KEYS: n bucket keys, then (quota mode > 0) the quota hash
# ARGV: test offset ms, n, quota mode (0 none, 1 check, 2 charge, 3 refund), quota cost, day limit,
#       month limit, then rate/s, burst, cost of each bucket
# Returns {allowed, retry_after_ms, tokens left in bucket 1 (floor), day left, month left}
LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local n, mode, qcost = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local day_limit, month_limit = tonumber(ARGV[5]), tonumber(ARGV[6])
local wait, tokens = 0, {}
for i = 1, n do
  local rate, burst, cost = tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i]), tonumber(ARGV[6 + 3 * i])
  local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tk, ts = tonumber(v[1]), tonumber(v[2])
  if tk == nil or ts == nil then tk = burst else tk = math.min(burst, tk + math.max(0, now - ts) * rate / 1000) end
  tokens[i] = tk
  if tk < cost then wait = math.max(wait, math.ceil((cost - tk) * 1000 / rate)) end
end
local day_left, month_left, day, month, day_n, month_n, month_end = -1, -1, 0, 0, 0, 0, 0
if mode > 0 then
  day = math.floor(now / 86400000)
  -- civil (year, month) of the UTC day number: days-from-civil inverted (proleptic Gregorian)
  local z = day + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local dom = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  local days_in = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}
  local len = days_in[m]
  if m == 2 and ((y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0) then len = 29 end
  month = y * 100 + m
  month_end = (day - dom + 1 + len) * 86400000
  local q = redis.call('HMGET', KEYS[n + 1], 'day', 'day_n', 'month', 'month_n')
  if tonumber(q[1]) == day then day_n = tonumber(q[2]) end
  if tonumber(q[3]) == month then month_n = tonumber(q[4]) end
  if mode == 3 then
    day_n, month_n = math.max(0, day_n - qcost), math.max(0, month_n - qcost)
    redis.call('HSET', KEYS[n + 1], 'day', day, 'day_n', day_n, 'month', month, 'month_n', month_n)
    redis.call('PEXPIREAT', KEYS[n + 1], month_end + 3600000)
    return {1, 0, -1, day_limit - day_n, month_limit - month_n}
  end
  local need = (mode == 2) and qcost or 1
  if day_n + need > day_limit then wait = math.max(wait, (day + 1) * 86400000 - now) end
  if month_n + need > month_limit then wait = math.max(wait, month_end - now) end
  day_left, month_left = day_limit - day_n, month_limit - month_n
end
local first = -1
if n > 0 then first = math.floor(tokens[1]) end
if wait > 0 then return {0, wait, first, day_left, month_left} end
for i = 1, n do
  local rate, burst, cost = tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i]), tonumber(ARGV[6 + 3 * i])
  tokens[i] = tokens[i] - cost
  redis.call('HSET', KEYS[i], 'tokens', tostring(tokens[i]), 'ts', now)
  redis.call('PEXPIRE', KEYS[i], math.ceil(burst * 1000 / rate) + 1000)
end
if n > 0 then first = math.floor(tokens[1]) end
if mode == 2 then
  redis.call('HSET', KEYS[n + 1], 'day', day, 'day_n', day_n + qcost, 'month', month, 'month_n', month_n + qcost)
  redis.call('PEXPIREAT', KEYS[n + 1], month_end + 3600000)
  day_left, month_left = day_left - qcost, month_left - qcost
end
return {1, 0, first, day_left, month_left}
"""

QuotaMode = Literal["check", "charge"]
_MODES = {"check": 1, "charge": 2}


@dataclass(frozen=True)
class Bucket:
    """A token bucket: refills at ``rate_per_s`` up to ``burst``; a call takes ``cost`` tokens."""

    key: str
    rate_per_s: float
    burst: float
    cost: float = 1.0

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst <= 0 or self.cost < 0:
            raise ValueError(f"bucket {self.key}: rate and burst must be > 0 and cost >= 0")


@dataclass(frozen=True)
class Quota:
    """A budget per UTC day and per UTC month (Redis' clock), kept in one hash at ``key``.

    ``charge`` spends ``cost`` when allowed (refused when it would pass a limit); ``check`` only refuses
    when the budget is already spent (management calls of a tenant out of quota)."""

    key: str
    daily: int
    monthly: int
    cost: int = 1
    mode: QuotaMode = "charge"


@dataclass(frozen=True)
class Verdict:
    """The outcome of one :meth:`AtomicLimits.acquire`."""

    allowed: bool
    retry_after_s: float
    """0 when allowed; else how long until every refusing limit would allow this call"""
    bucket_tokens_left: int | None
    """tokens left in the first bucket (None without buckets)"""
    day_left: int | None
    month_left: int | None


class AtomicLimits:
    """Runs the budget script. ``test_offset_s`` moves Redis' clock forward in tests (0 in production)."""

    def __init__(self, redis: Redis[bytes], test_offset_s: Callable[[], float] = lambda: 0.0) -> None:
        self._script = redis.register_script(LUA)
        self._offset = test_offset_s

    async def acquire(self, buckets: Sequence[Bucket], quota: Quota | None = None) -> Verdict:
        """All of ``buckets`` and ``quota`` allow the call: charge them all; else charge nothing."""
        if not buckets and quota is None:
            raise ValueError("acquire needs a bucket or a quota")
        keys = [b.key for b in buckets] + ([quota.key] if quota else [])
        args: list[float | int] = [int(self._offset() * 1000), len(buckets), _MODES[quota.mode] if quota else 0,
                                   quota.cost if quota else 0, quota.daily if quota else 0,
                                   quota.monthly if quota else 0]
        for b in buckets:
            args += [b.rate_per_s, b.burst, b.cost]
        allowed, wait_ms, first, day_left, month_left = (int(v) for v in await self._script(keys=keys, args=args))
        return Verdict(allowed=bool(allowed), retry_after_s=max(0.0, wait_ms / 1000),
                       bucket_tokens_left=first if buckets else None,
                       day_left=max(0, day_left) if quota else None, month_left=max(0, month_left) if quota else None)

    async def refund(self, quota: Quota, amount: int) -> Verdict:
        """Give ``amount`` back to ``quota``'s current day and month (a reservation larger than the use)."""
        if amount <= 0:
            return Verdict(True, 0.0, None, None, None)
        args: list[float | int] = [int(self._offset() * 1000), 0, 3, amount, quota.daily, quota.monthly]
        _, _, _, day_left, month_left = (int(v) for v in await self._script(keys=[quota.key], args=args))
        return Verdict(True, 0.0, None, max(0, day_left), max(0, month_left))


def retry_after_header(verdict: Verdict) -> str:
    """``Retry-After`` seconds (an integer, at least 1) for a refused call."""
    return str(max(1, math.ceil(verdict.retry_after_s)))
