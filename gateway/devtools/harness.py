"""A gateway on loopback for tests, the SDK test run and the benchmark: real app, real Redis, stub backends.

Everything is namespaced by a unique Redis prefix (and Kafka topic prefix), so runs never share state.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from pydantic import SecretStr

from gateway.auth.principal import ALL_SCOPES
from gateway.main import create_app
from gateway.settings import AuthSettings, GatewaySettings, PlanLimits, SigningKey

ADMIN_TOKEN = "admin-" + "x1y2z3" * 6  # a test credential (test settings only)


def new_signing_key(kid: str) -> SigningKey:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    return SigningKey(kid=kid, private_key_pem=SecretStr(pem))


def gateway_settings(*, backend: str = "", worker: bool = False, plans: dict[str, PlanLimits] | None = None,
                  unique: str | None = None, **webhooks: object) -> GatewaySettings:
    """Settings of an isolated gateway: own Redis prefix and Kafka topic prefix, loopback webhooks allowed."""
    unique = unique or uuid.uuid4().hex[:10]
    settings = GatewaySettings(environment="test", redis_prefix=f"test-gw-{unique}:")
    settings.kafka.topic_prefix = f"test-{unique}."
    settings.auth = AuthSettings(signing_keys=[new_signing_key("k1")], admin_token=SecretStr(ADMIN_TOKEN))
    for capability in ("assignment", "timeline", "nlp", "anomaly", "personalization", "automation"):
        setattr(settings.backends, capability, backend)  # one stub backend serves them all
    settings.webhooks = settings.webhooks.model_copy(update={
        "worker_enabled": worker, "allow_private_targets": True, "consumer_group": f"test-gw-{unique}",
        "initial_backoff_s": 0.05, "max_backoff_s": 0.5, "dispatch_interval_s": 0.05, "timeout_s": 2.0, **webhooks})
    if plans:
        settings.plans = {**settings.plans, **plans}
    return settings


@dataclass
class Client:
    client_id: str
    client_secret: str
    tenant_id: str


@asynccontextmanager
async def lifespan_client(app: FastAPI, base_url: str = "http://gateway.test") -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling the app in-process, with the app's lifespan run around it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


async def create_client(http: httpx.AsyncClient, tenant_id: str, scopes: tuple[str, ...] = ALL_SCOPES,
                        plan: str | None = None) -> Client:
    response = await http.post("/v1/admin/clients", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                               json={"tenant_id": tenant_id, "scopes": list(scopes), "plan": plan})
    response.raise_for_status()
    body = response.json()
    return Client(body["client_id"], body["client_secret"], tenant_id)


async def token(http: httpx.AsyncClient, client: Client, scope: str | None = None) -> str:
    form = {"grant_type": "client_credentials", "client_id": client.client_id, "client_secret": client.client_secret}
    if scope is not None:
        form["scope"] = scope
    response = await http.post("/oauth/token", data=form)
    response.raise_for_status()
    return str(response.json()["access_token"])


def build(settings: GatewaySettings, clock: Callable[[], float] = time.time,
          limits_offset_s: Callable[[], float] = lambda: 0.0) -> FastAPI:
    return create_app(settings, clock=clock, limits_offset_s=limits_offset_s)
