"""Webhook subscriptions and deliveries in Redis, always addressed through the owning tenant."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable

from redis.asyncio import Redis

from gateway.webhooks.models import Attempt, Delivery, Subscription, SubscriptionCreated, SubscriptionPatch
from gateway.webhooks.sealing import SecretBox

# Claim due deliveries atomically: push their due time to now + lease, so a crashed worker's claims
# come back after the lease (at-least-once; receivers dedupe by the idempotency key).
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"""

# Create a subscription unless the tenant has ``limit`` already: count and create in one step, so that
# concurrent creates cannot all see room for one more.
# KEYS: the tenant's subscription set, the new subscription's hash; ARGV: limit, id, then field/value pairs
_CREATE = """
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SADD', KEYS[1], ARGV[2])
return 1
"""


def delivery_id(subscription_id: str, event_id: str) -> str:
    """Stable per (subscription, event): a redelivered Kafka record maps to the same delivery."""
    return "dlv_" + hashlib.sha256(f"{subscription_id}:{event_id}".encode()).hexdigest()[:24]


class WebhookStore:
    """``box`` seals the signing secrets (never stored in plain text); a store without one cannot create
    subscriptions or hand out their secrets (enough for enqueueing deliveries)."""

    def __init__(self, redis: Redis[bytes], prefix: str, clock: Callable[[], float] = time.time, *,
                 box: SecretBox | None = None) -> None:
        self._r = redis
        self._p = prefix + "wh:"
        self._clock = clock
        self._box = box
        self._claim = redis.register_script(_CLAIM)
        self._create = redis.register_script(_CREATE)

    # -- subscriptions -------------------------------------------------------------------------------
    def _sub_key(self, sub_id: str) -> str:
        return f"{self._p}sub:{sub_id}"

    async def create(self, tenant_id: str, url: str, event_types: list[str], description: str,
                     limit: int = 1_000_000) -> SubscriptionCreated | None:
        """A new subscription with a fresh signing secret; None when the tenant already has ``limit``."""
        sub_id, secret = "wh_" + secrets.token_hex(10), "whsec_" + secrets.token_urlsafe(32)
        now = int(self._clock())
        fields = {"tenant_id": tenant_id, "url": url, "event_types": json.dumps(event_types),
                  "description": description, "active": "1", "created_at": str(now),
                  "secret_sealed": self._sealer().seal(secret, context=sub_id)}
        pairs = [item for field in fields.items() for item in field]
        if not await self._create(keys=[f"{self._p}t:{tenant_id}:subs", self._sub_key(sub_id)],
                                  args=[limit, sub_id, *pairs]):
            return None
        return SubscriptionCreated(id=sub_id, url=url, event_types=event_types, description=description,  # type: ignore[arg-type]
                                   active=True, created_at=now, secret=secret)

    async def _raw(self, tenant_id: str, sub_id: str) -> dict[str, str] | None:
        data = {k.decode(): v.decode() for k, v in (await self._r.hgetall(self._sub_key(sub_id))).items()}
        return data if data and data["tenant_id"] == tenant_id else None

    @staticmethod
    def _model(sub_id: str, data: dict[str, str]) -> Subscription:
        return Subscription(id=sub_id, url=data["url"], event_types=json.loads(data["event_types"]),
                            description=data["description"], active=data["active"] == "1",
                            created_at=int(data["created_at"]))

    async def get(self, tenant_id: str, sub_id: str) -> Subscription | None:
        data = await self._raw(tenant_id, sub_id)
        return self._model(sub_id, data) if data else None

    async def subscriptions(self, tenant_id: str) -> list[Subscription]:
        ids = sorted(i.decode() for i in await self._r.smembers(f"{self._p}t:{tenant_id}:subs"))
        subs = [await self.get(tenant_id, i) for i in ids]
        return [s for s in subs if s is not None]

    async def update(self, tenant_id: str, sub_id: str, patch: SubscriptionPatch) -> Subscription | None:
        if await self._raw(tenant_id, sub_id) is None:
            return None
        fields: dict[str, str] = {}
        if patch.url is not None:
            fields["url"] = str(patch.url)
        if patch.event_types is not None:
            fields["event_types"] = json.dumps(patch.event_types)
        if patch.description is not None:
            fields["description"] = patch.description
        if patch.active is not None:
            fields["active"] = "1" if patch.active else "0"
        if fields:
            await self._r.hset(self._sub_key(sub_id), mapping=fields)  # type: ignore[arg-type]
        return await self.get(tenant_id, sub_id)

    async def delete(self, tenant_id: str, sub_id: str) -> bool:
        if await self._raw(tenant_id, sub_id) is None:
            return False
        await self._r.delete(self._sub_key(sub_id))
        await self._r.srem(f"{self._p}t:{tenant_id}:subs", sub_id)
        return True

    def _sealer(self) -> SecretBox:
        if self._box is None:
            raise RuntimeError("this WebhookStore has no SecretBox: it cannot seal or open signing secrets")
        return self._box

    async def target(self, sub_id: str) -> tuple[str, str] | None:
        """(url, secret) of an active subscription, for the dispatcher. Raises :class:`SealError` when the
        secret does not open (its key is not configured)."""
        data = {k.decode(): v.decode() for k, v in (await self._r.hgetall(self._sub_key(sub_id))).items()}
        if not data or data["active"] != "1":
            return None
        box = self._sealer()
        sealed = data.get("secret_sealed")
        secret = box.open(sealed, context=sub_id) if sealed else data["secret"]  # "secret": written before sealing
        if sealed is None or box.stale(sealed):  # seal (again) under the active key
            await self._r.hset(self._sub_key(sub_id), "secret_sealed", box.seal(secret, context=sub_id))
            await self._r.hdel(self._sub_key(sub_id), "secret")
        return data["url"], secret

    # -- deliveries ----------------------------------------------------------------------------------
    def _dlv_key(self, dlv_id: str) -> str:
        return f"{self._p}dlv:{dlv_id}"

    async def enqueue(self, tenant_id: str, event_id: str, event_type: str, body: bytes, traceparent: str) -> list[str]:
        """One delivery per matching subscription of the event's tenant; an event seen before adds nothing."""
        created = []
        for sub in await self.subscriptions(tenant_id):
            if not sub.active or event_type not in sub.event_types:
                continue
            dlv = delivery_id(sub.id, event_id)
            if not await self._r.hsetnx(self._dlv_key(dlv), "id", dlv):
                continue
            now = self._clock()
            await self._r.hset(self._dlv_key(dlv), mapping={
                "tenant_id": tenant_id, "subscription_id": sub.id, "event_id": event_id, "event_type": event_type,
                "body": body, "status": "pending", "attempts": 0, "created_at": now, "next_attempt_at": now,
                "traceparent": traceparent, "log": "[]"})
            await self._r.zadd(f"{self._p}sub:{sub.id}:dlv", {dlv: now})
            await self._r.zadd(f"{self._p}due", {dlv: now})
            created.append(dlv)
        return created

    async def claim_due(self, limit: int, lease_s: float) -> list[str]:
        now = self._clock()
        ids = await self._claim(keys=[f"{self._p}due"], args=[now, limit, now + lease_s])
        return [i.decode() for i in ids]

    async def load(self, dlv_id: str) -> dict[str, bytes]:
        return {k.decode(): v for k, v in (await self._r.hgetall(self._dlv_key(dlv_id))).items()}

    async def record(self, dlv_id: str, tenant_id: str, attempt: Attempt, *, status: str,
                     retry_at: float | None) -> None:
        """Store one attempt's outcome and schedule the next one (or finish)."""
        key = self._dlv_key(dlv_id)
        log = json.loads((await self._r.hget(key, "log")) or b"[]")
        log.append(attempt.model_dump())
        fields: dict[str, str | float | int] = {"status": status, "attempts": attempt.attempt, "log": json.dumps(log)}
        if status == "delivered":
            fields["delivered_at"] = attempt.at
        fields["next_attempt_at"] = retry_at if retry_at is not None else ""
        await self._r.hset(key, mapping=fields)  # type: ignore[arg-type]
        if retry_at is not None:
            await self._r.zadd(f"{self._p}due", {dlv_id: retry_at})
        else:
            await self._r.zrem(f"{self._p}due", dlv_id)
        if status == "dead":
            await self._r.zadd(f"{self._p}t:{tenant_id}:dead", {dlv_id: attempt.at})

    async def drop(self, dlv_id: str) -> None:
        await self._r.zrem(f"{self._p}due", dlv_id)

    async def delivery(self, tenant_id: str, dlv_id: str) -> Delivery | None:
        data = await self.load(dlv_id)
        if not data or data["tenant_id"].decode() != tenant_id:
            return None
        text = {k: v.decode() for k, v in data.items() if k != "body"}
        return Delivery(id=dlv_id, subscription_id=text["subscription_id"], event_id=text["event_id"],
                        event_type=text["event_type"], status=text["status"], attempts=int(text["attempts"]),  # type: ignore[arg-type]
                        created_at=float(text["created_at"]),
                        next_attempt_at=float(text["next_attempt_at"]) if text.get("next_attempt_at") else None,
                        delivered_at=float(text["delivered_at"]) if text.get("delivered_at") else None,
                        log=[Attempt(**a) for a in json.loads(text["log"])])

    async def deliveries(self, tenant_id: str, sub_id: str, limit: int) -> list[Delivery]:
        ids = await self._r.zrevrange(f"{self._p}sub:{sub_id}:dlv", 0, limit - 1)
        found = [await self.delivery(tenant_id, i.decode()) for i in ids]
        return [d for d in found if d is not None]

    async def dead_letters(self, tenant_id: str, limit: int) -> list[Delivery]:
        ids = await self._r.zrevrange(f"{self._p}t:{tenant_id}:dead", 0, limit - 1)
        found = [await self.delivery(tenant_id, i.decode()) for i in ids]
        return [d for d in found if d is not None]

    async def replay(self, tenant_id: str, dlv_id: str) -> Delivery | None:
        """Send a delivery again (same idempotency key), with a fresh budget of attempts."""
        if await self.delivery(tenant_id, dlv_id) is None:
            return None
        now = self._clock()
        await self._r.hset(self._dlv_key(dlv_id), mapping={"status": "pending", "next_attempt_at": now,
                                                           "attempts": 0})
        await self._r.zrem(f"{self._p}t:{tenant_id}:dead", dlv_id)
        await self._r.zadd(f"{self._p}due", {dlv_id: now})
        return await self.delivery(tenant_id, dlv_id)
