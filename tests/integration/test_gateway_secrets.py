"""Webhook signing secrets are encrypted in Redis: a raw read of every key the gateway wrote holds no
secret, deliveries are still signed with it, and a rotated key ring still opens the old entries."""

from __future__ import annotations

import asyncio
import base64
import os
import time
import uuid

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from sunday.ml.v1 import events_pb2

from gateway.devtools import harness
from gateway.settings import EnvelopeKey, GatewaySettings, WebhookSettings
from gateway.webhooks import signing
from gateway.webhooks.sealing import SecretBox
from gateway.webhooks.store import WebhookStore
from mesh.bus import KafkaPublisher
from mesh.config import MeshSettings
from mesh.events import new_envelope
from tests.support import await_until, webhook_receiver

pytestmark = pytest.mark.integration


async def _everything_under(redis: Redis[bytes], prefix: str) -> bytes:
    """Every value of every key under ``prefix``, read raw whatever its type."""
    out = []
    async for key in redis.scan_iter(f"{prefix}*"):
        kind = (await redis.type(key)).decode()  # type: ignore[no-untyped-call]
        if kind == "hash":
            out += [k + b"=" + v for k, v in (await redis.hgetall(key)).items()]
        elif kind == "set":
            out += list(await redis.smembers(key))
        elif kind == "zset":
            out += list(await redis.zrange(key, 0, -1))
        elif kind == "string":
            out.append(await redis.get(key) or b"")
        elif kind == "list":
            out += list(await redis.lrange(key, 0, -1))
        out.append(key)
    return b"\n".join(out)


def _key(kid: str) -> EnvelopeKey:
    return EnvelopeKey(kid=kid, key=SecretStr(base64.b64encode(os.urandom(32)).decode()))


async def test_redis_holds_no_signing_secret_and_deliveries_are_signed_with_it() -> None:
    settings: GatewaySettings = harness.gateway_settings(worker=True, secret_keys=[_key("w1")])
    async with webhook_receiver() as receiver, harness.lifespan_client(harness.build(settings)) as http:
        auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, 'acme'))}"}
        created = await http.post("/v1/webhooks", headers=auth,
                                  json={"url": receiver.url, "event_types": ["assignment_prediction"]})
        secret = created.json()["secret"]
        env = new_envelope("acme", events_pb2.AssignmentPrediction(task_id="t1", project_id="p1"),
                           producer="assignment")

        def publish() -> None:
            publisher = KafkaPublisher(settings.kafka)
            publisher.publish(env)
            publisher.close()

        await asyncio.to_thread(publish)
        await await_until(lambda: len(receiver.calls) == 1, "the delivery")
        headers, body = receiver.calls[0]
        assert signing.verify(secret, headers["sunday-webhook-timestamp"], body, headers["sunday-webhook-signature"],
                              now=time.time())
        ctx = http._transport.app.state.gateway  # type: ignore[attr-defined]
        dump = await _everything_under(ctx.redis, settings.redis_prefix)
    assert b"sub:" in dump and b"secret" in dump  # the subscription and its sealed secret are there...
    assert secret.encode() not in dump and secret.removeprefix("whsec_").encode() not in dump  # ...not the secret


async def test_rotated_keys_open_old_secrets_and_reseal_them_with_the_active_key() -> None:
    redis: Redis[bytes] = Redis.from_url(MeshSettings().redis.url)
    prefix = f"test-seal-{uuid.uuid4().hex[:8]}:"
    k1, k2 = _key("k1"), _key("k2")
    try:
        before = WebhookStore(redis, prefix, box=SecretBox.from_settings(WebhookSettings(secret_keys=[k1])))
        sub = await before.create("acme", "https://hooks.example/h", ["alert"], "")
        assert sub is not None
        rotated = WebhookStore(redis, prefix, box=SecretBox.from_settings(
            WebhookSettings(secret_keys=[k1, k2], active_secret_kid="k2")))
        assert await rotated.target(sub.id) == ("https://hooks.example/h", sub.secret)
        stored = (await redis.hget(f"{prefix}wh:sub:{sub.id}", "secret_sealed") or b"").decode()
        assert stored.split(".")[1] == "k2"  # re-sealed under the active key on first use
        only_new = WebhookStore(redis, prefix, box=SecretBox.from_settings(WebhookSettings(secret_keys=[k2])))
        assert await only_new.target(sub.id) == ("https://hooks.example/h", sub.secret)  # k1 can go now

        await redis.hset(f"{prefix}wh:sub:{sub.id}", mapping={"secret": "whsec_legacy"})  # written before sealing
        await redis.hdel(f"{prefix}wh:sub:{sub.id}", "secret_sealed")
        assert await only_new.target(sub.id) == ("https://hooks.example/h", "whsec_legacy")
        assert b"whsec_legacy" not in await _everything_under(redis, prefix)  # sealed on first use
    finally:
        keys = [k async for k in redis.scan_iter(f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()  # type: ignore[attr-defined]
