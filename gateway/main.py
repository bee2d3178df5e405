"""``create_app(settings)`` builds the gateway and does nothing else; adapters are chosen here only."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from redis.asyncio import Redis

from gateway.auth.keys import KeyRing
from gateway.auth.store import CredentialStore
from gateway.backends import Backends
from gateway.body_limit import BodySizeLimit
from gateway.context import GatewayContext
from gateway.metrics import METRICS_PATH, RequestMetrics, metrics_endpoint
from gateway.problems import install_problem_handlers
from gateway.ratelimit import RateLimiter
from gateway.routes import auth, capabilities, health, keys, webhooks
from gateway.settings import CAPABILITIES, GatewaySettings
from gateway.webhooks.sealing import SecretBox
from gateway.webhooks.store import WebhookStore
from gateway.worker import DeliveryWorker

API_VERSION = "1.0.0"
DESCRIPTION = """The one door to Sunday.com's ML mesh.

Authenticate with an access token from `POST /oauth/token` (client credentials) or an API key.
The tenant is always the credential's: ids of other tenants answer 404. Every error is an RFC 9457
problem (`application/problem+json`). Limited routes send `RateLimit-*` headers; `429` and `503` send
`Retry-After`."""


def _context(settings: GatewaySettings, clock: Callable[[], float], redis: Redis[bytes] | None,
             backends: Backends | None, limits_offset_s: Callable[[], float]) -> GatewayContext:
    client = redis or Redis.from_url(settings.redis.url)
    return GatewayContext(
        settings=settings, redis=client, keys=KeyRing.from_settings(settings.auth, clock),
        credentials=CredentialStore(client, settings.redis_prefix),
        limiter=RateLimiter(client, settings.redis_prefix, settings, limits_offset_s),
        backends=backends or Backends.connect(settings.backends),
        webhooks=WebhookStore(client, settings.redis_prefix, clock, box=SecretBox.from_settings(settings.webhooks)),
        clock=clock)


def create_app(settings: GatewaySettings, *, clock: Callable[[], float] = time.time, redis: Redis[bytes] | None = None,
               backends: Backends | None = None, limits_offset_s: Callable[[], float] = lambda: 0.0) -> FastAPI:
    """The ASGI app. Connections are opened by its lifespan, not here.

    ``clock`` stamps tokens and webhooks; rate limits and quotas run on Redis' clock, which tests may
    move forward with ``limits_offset_s`` (always 0 in production).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = _context(settings, clock, redis, backends, limits_offset_s)
        app.state.gateway = ctx
        worker = DeliveryWorker(settings, ctx.webhooks, clock) if settings.webhooks.worker_enabled else None
        if worker is not None:
            ctx.worker = worker
            await worker.start()
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await ctx.backends.close()
            if redis is None:
                await ctx.redis.aclose()  # type: ignore[attr-defined]

    app = FastAPI(title="Sunday ML gateway", version=API_VERSION, description=DESCRIPTION, lifespan=lifespan)
    install_problem_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, max_json_depth=settings.max_json_depth)
    app.add_middleware(RequestMetrics)
    # Outside the routers' dependencies on purpose: no credential, no rate limit, on this path only.
    app.add_route(METRICS_PATH, metrics_endpoint, methods=["GET"], include_in_schema=False)
    for router in (health.router, auth.router, capabilities.assignment, capabilities.timeline,
                   capabilities.nlp_router, capabilities.personalization, capabilities.automation, capabilities.anomaly,
                   webhooks.router,
                   keys.router, keys.admin):
        app.include_router(router)
    for capability in CAPABILITIES:
        if capability not in capabilities.SERVED:
            app.include_router(capabilities.pending_router(capability))
    # No spans for the ASGI send/receive events: two extra spans a request that said nothing the server
    # span does not (the gateway profile showed them); the HTTP -> gRPC -> Kafka trace is unchanged.
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics", exclude_spans=["receive", "send"])
    return app


def app_from_env() -> FastAPI:
    """The app of one worker of ``python -m gateway serve`` with ``MESH_WORKERS`` > 1 (a uvicorn factory)."""
    from mesh.telemetry import setup_tracing

    settings = GatewaySettings()
    setup_tracing(settings.telemetry)
    return create_app(settings)
