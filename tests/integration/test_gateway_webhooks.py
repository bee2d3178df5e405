"""Webhooks end to end: Kafka output topic -> delivery worker -> a signed POST to a loopback receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from sunday.ml.v1 import events_pb2

from gateway.devtools import harness
from gateway.settings import GatewaySettings
from gateway.webhooks import signing
from gateway.webhooks.dispatcher import SPAN_DELIVER
from mesh.bus import KafkaPublisher
from mesh.events import new_envelope
from tests.support import Receiver, await_until, webhook_receiver

pytestmark = pytest.mark.integration


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as state:
        yield state


@pytest.fixture
def settings() -> GatewaySettings:
    return harness.gateway_settings(worker=True, max_attempts=3)


@pytest.fixture
async def http(settings: GatewaySettings, span_exporter: InMemorySpanExporter) -> AsyncIterator[httpx.AsyncClient]:
    async with harness.lifespan_client(harness.build(settings)) as client:
        yield client


def _prediction(tenant: str, task: str) -> events_pb2.Envelope:
    return new_envelope(tenant, events_pb2.AssignmentPrediction(task_id=task, project_id="proj-1", candidates=[
        events_pb2.RankedCandidate(user_id="ada", score=0.9)]), producer="assignment")


def _publish(settings: GatewaySettings, envelopes: list[events_pb2.Envelope], twice: bool = False) -> None:
    publisher = KafkaPublisher(settings.kafka)
    for env in envelopes * (2 if twice else 1):
        publisher.publish(env)
    publisher.close()


async def _subscribe(http: httpx.AsyncClient, tenant: str, url: str) -> tuple[dict[str, str], dict[str, object]]:
    auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, tenant))}"}
    created = await http.post("/v1/webhooks", json={"url": url, "event_types": ["assignment_prediction"]},
                              headers=auth)
    assert created.status_code == 201, created.text
    return auth, created.json()


async def test_every_prediction_delivered_once_signed_and_tenant_scoped(
        http: httpx.AsyncClient, settings: GatewaySettings, receiver: Receiver,
        span_exporter: InMemorySpanExporter) -> None:
    auth, sub = await _subscribe(http, "acme", receiver.url)
    await _subscribe(http, "globex", receiver.url + "?tenant=globex")
    mine = [_prediction("acme", f"task-{i}") for i in range(5)]
    await asyncio.to_thread(_publish, settings, [*mine, _prediction("initech", "x")], True)  # each event twice
    await await_until(lambda: len(receiver.calls) >= 5, "5 deliveries")
    deadline = time.monotonic() + 30
    while {d["status"] for d in (await http.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=auth)
                                 ).json()["items"]} != {"delivered"}:
        assert time.monotonic() < deadline, "deliveries not all delivered"
        await asyncio.sleep(0.05)
    assert len(receiver.calls) == 5  # ten records published (each event twice), five deliveries
    keys = [h[signing.HEADER_IDEMPOTENCY.lower()] for h, _ in receiver.calls]
    assert len(set(keys)) == 5
    seen_events = set()
    for headers, body in receiver.calls:
        assert signing.verify(str(sub["secret"]), headers["sunday-webhook-timestamp"], body,
                              headers["sunday-webhook-signature"], now=time.time())
        assert b'"tenant_id": "acme"' in body
        seen_events.add(headers[signing.HEADER_ID.lower()])
    assert len(seen_events) == 5
    # the delivery span continues the producer's trace (the Kafka hop in one trace)
    publish_traces = {s.context.trace_id for s in span_exporter.get_finished_spans() if s.name == "mesh.publish"}
    # only this test's deliveries: the span exporter is the session's, other gateways' workers record there too
    items = (await http.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=auth)).json()["items"]
    mine_ids = {d["id"] for d in items}
    assert len(mine_ids) == 5
    deliver_traces = {s.context.trace_id for s in span_exporter.get_finished_spans()
                      if s.name == SPAN_DELIVER and (s.attributes or {}).get("sunday.delivery_id") in mine_ids}
    assert deliver_traces and deliver_traces <= publish_traces


def _deliveries(outcome: str) -> float:
    return REGISTRY.get_sample_value("gateway_webhook_deliveries_total", {"outcome": outcome}) or 0.0


async def test_failing_receiver_retried_with_backoff_then_dead_lettered_then_replayed(
        http: httpx.AsyncClient, settings: GatewaySettings, receiver: Receiver) -> None:
    before = {o: _deliveries(o) for o in ("ok", "failed", "dead_lettered")}
    receiver.status = 503
    auth, sub = await _subscribe(http, "acme", receiver.url)
    await asyncio.to_thread(_publish, settings, [_prediction("acme", "task-1")])

    async def dead() -> list[dict[str, object]]:
        items: list[dict[str, object]] = (await http.get("/v1/webhooks/dead-letters", headers=auth)).json()["items"]
        return items

    deadline = time.monotonic() + 30
    while not (items := await dead()):
        assert time.monotonic() < deadline, "no dead letter"
        await asyncio.sleep(0.05)
    delivery = items[0]
    assert delivery["status"] == "dead" and delivery["attempts"] == 3 and len(receiver.calls) == 3
    log = delivery["log"]
    assert isinstance(log, list)
    backoffs = [a["backoff_s"] for a in log]
    assert backoffs[-1] is None and backoffs[0] < backoffs[1]  # exponential, the last one gave up
    assert len({h[signing.HEADER_IDEMPOTENCY.lower()] for h, _ in receiver.calls}) == 1
    assert _deliveries("failed") - before["failed"] == 2  # two retried attempts, then the dead letter
    assert _deliveries("dead_lettered") - before["dead_lettered"] == 1

    receiver.status = 200
    replay = await http.post(f"/v1/webhooks/deliveries/{delivery['id']}/replay", headers=auth)
    assert replay.status_code == 202
    await await_until(lambda: len(receiver.calls) == 4, "the replayed delivery")
    assert receiver.calls[-1][0][signing.HEADER_IDEMPOTENCY.lower()] == delivery["id"]
    assert await dead() == []
    listed = (await http.get(f"/v1/webhooks/{sub['id']}/deliveries", headers=auth)).json()["items"]
    assert listed[0]["id"] == delivery["id"]
    await await_until(lambda: _deliveries("ok") - before["ok"] == 1, "the replay counted as delivered")
    scraped = (await http.get("/metrics")).text  # no credentials: /metrics is open, and only it
    assert 'gateway_webhook_deliveries_total{outcome="dead_lettered"}' in scraped


async def test_private_targets_refused_when_not_allowed() -> None:
    settings = harness.gateway_settings()
    settings.webhooks = settings.webhooks.model_copy(update={"allow_private_targets": False})
    async with harness.lifespan_client(harness.build(settings)) as http:
        auth = {"Authorization": f"Bearer {await harness.token(http, await harness.create_client(http, 'acme'))}"}
        for url in ("https://127.0.0.1/hook", "https://10.1.2.3/hook", "https://169.254.169.254/latest/meta-data",
                    "http://example.com/hook"):
            refused = await http.post("/v1/webhooks", json={"url": url, "event_types": ["alert"]}, headers=auth)
            assert refused.status_code == 422, url
            assert refused.json()["type"].endswith("/unsafe-webhook-target")
