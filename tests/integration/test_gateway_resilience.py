"""Readiness with the webhook consumer, and backend retries, on the real app with Redis and Kafka."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import REGISTRY

from gateway.context import GatewayContext
from gateway.devtools import harness, stub_backend
from gateway.webhooks.consumer import DeliveryEnqueuer
from gateway.worker import DeliveryWorker, Runner

pytestmark = pytest.mark.integration


class Broken:
    def __call__(self, _enqueuer: DeliveryEnqueuer) -> Runner:
        raise RuntimeError("no broker")


async def test_readyz_shows_the_consumer_and_fails_once_it_gave_up() -> None:
    settings = harness.gateway_settings(worker=True)
    app = harness.build(settings)
    async with harness.lifespan_client(app) as http:
        for _ in range(600):  # bounded: the real Kafka consumer of this app comes up
            body = (await http.get("/readyz")).json()
            if body.get("webhook_consumer") == "running":
                break
            await asyncio.sleep(0.05)
        assert body == {"status": "ready", "webhook_consumer": "running"}
        ctx: GatewayContext = app.state.gateway
        broken = DeliveryWorker(settings.model_copy(update={"webhooks": settings.webhooks.model_copy(
            update={"consumer_max_restarts": 1, "consumer_restart_backoff_s": 0.001})}), ctx.webhooks, time.time,
            open_runner=Broken())
        await asyncio.wait_for(broken.run_consumer(), 10)
        ctx.worker, running = broken, ctx.worker
        try:
            response = await http.get("/readyz")
        finally:
            ctx.worker = running
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert "webhook consumer" in response.json()["detail"]


async def test_readyz_without_an_in_process_worker() -> None:
    async with harness.lifespan_client(harness.build(harness.gateway_settings())) as http:
        assert (await http.get("/readyz")).json() == {"status": "ready"}


async def test_unreachable_backend_is_retried_then_503() -> None:
    def retried() -> float:
        return REGISTRY.get_sample_value("gateway_backend_retries_total", {"capability": "timeline"}) or 0.0

    before = retried()
    async with harness.lifespan_client(harness.build(harness.gateway_settings(backend="127.0.0.1:1"))) as http:
        token = await harness.token(http, await harness.create_client(http, "acme"))
        response = await http.get("/v1/timeline/tasks/task-1", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503 and response.headers["retry-after"] == "5"
    assert retried() == before + 1


async def test_one_channel_per_backend_and_not_found_is_404() -> None:
    server, port = await stub_backend.start(0)
    app = harness.build(harness.gateway_settings(backend=f"127.0.0.1:{port}"))
    try:
        async with harness.lifespan_client(app) as http:
            auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, 'acme'))}"}
            first = await http.get("/v1/timeline/tasks/task-1", headers=auth)
            channels = list(app.state.gateway.backends.channels)
            missing = await http.get("/v1/timeline/tasks/task-9", headers=auth)  # globex's task
            again = await http.get("/v1/timeline/tasks/task-2", headers=auth)
            assert app.state.gateway.backends.channels == channels  # one long-lived channel per backend
    finally:
        await server.stop(None)
    assert first.status_code == 200 and again.status_code == 200
    assert missing.status_code == 404 and missing.json()["detail"] == "task not found"
