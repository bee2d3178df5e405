"""The adapters of one gateway instance, chosen once in ``create_app`` (tests swap in fakes there)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.auth.keys import KeyRing
from gateway.auth.store import CredentialStore
from gateway.backends import Backends
from gateway.ratelimit import RateLimiter
from gateway.settings import GatewaySettings
from gateway.webhooks.store import WebhookStore
from gateway.worker import DeliveryWorker


@dataclass
class GatewayContext:
    settings: GatewaySettings
    redis: Redis[bytes]
    keys: KeyRing
    credentials: CredentialStore
    limiter: RateLimiter
    backends: Backends
    webhooks: WebhookStore
    clock: Callable[[], float]
    worker: DeliveryWorker | None = None
    """the in-process webhook worker; None when it runs elsewhere (``python -m gateway worker``)"""
