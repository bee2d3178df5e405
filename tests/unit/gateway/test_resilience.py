"""Backend calls (retry policy, status -> problem), the webhook consumer's restarts, token cache, /metrics."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import grpc
import grpc.aio
import pytest
from prometheus_client import REGISTRY

from gateway.auth.keys import KeyRing, _VerifiedTokens
from gateway.auth.principal import Principal
from gateway.backends import Backends, problem_for, retry_policy
from gateway.devtools import harness
from gateway.problems import ProblemError
from gateway.settings import AuthSettings, BackendSettings
from gateway.webhooks.consumer import DeliveryEnqueuer
from gateway.worker import DeliveryWorker, Runner


def _rpc_error(code: grpc.StatusCode, details: str = "") -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.NOT_FOUND, 404), (grpc.StatusCode.INVALID_ARGUMENT, 422),
    (grpc.StatusCode.PERMISSION_DENIED, 403), (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 503), (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    (grpc.StatusCode.FAILED_PRECONDITION, 409), (grpc.StatusCode.INTERNAL, 502)])
def test_status_codes_map_to_problems(code: grpc.StatusCode, status: int) -> None:
    problem = problem_for("assignment", "task", _rpc_error(code, "secret internals"), retry_after_s=7)
    assert problem.status == status
    if status in (503, 429):
        assert problem.headers["Retry-After"] == "7" and problem.retry_after_s == 7
    if status in (404, 502, 503):
        assert "secret internals" not in (problem.detail or "")  # only invalid arguments echo the service


class FlakyMethod:
    """A stub method failing with the given codes, then answering."""

    def __init__(self, *codes: grpc.StatusCode) -> None:
        self.codes = list(codes)
        self.timeouts: list[float] = []

    async def __call__(self, request: str, *, timeout: float, metadata: Any = None) -> str:
        self.timeouts.append(timeout)
        if self.codes:
            raise _rpc_error(self.codes.pop(0))
        return f"answer to {request}"


def _backends(**settings: Any) -> Backends:
    config = BackendSettings(retry_initial_backoff_s=0.001, retry_max_backoff_s=0.002, **settings)
    return Backends(config, policy=retry_policy(config))


async def test_unavailable_is_retried_within_the_deadline() -> None:
    retries = REGISTRY.get_sample_value("gateway_backend_retries_total", {"capability": "assignment"}) or 0.0
    method = FlakyMethod(grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    assert await _backends(timeout_s=2.0).call("assignment", "task", method, "q") == "answer to q"
    assert len(method.timeouts) == 3 and all(0 < t <= 2.0 for t in method.timeouts)
    assert REGISTRY.get_sample_value("gateway_backend_retries_total", {"capability": "assignment"}) == retries + 1


async def test_attempts_are_bounded_and_end_in_503() -> None:
    method = FlakyMethod(*[grpc.StatusCode.UNAVAILABLE] * 10)
    with pytest.raises(ProblemError) as info:
        await _backends(retry_max_attempts=3).call("timeline", "task", method, "q")
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "5"
    assert len(method.timeouts) == 3


@pytest.mark.parametrize("code", [grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL])
async def test_other_codes_are_not_retried(code: grpc.StatusCode) -> None:
    method = FlakyMethod(code)
    with pytest.raises(ProblemError):
        await _backends().call("assignment", "task", method, "q")
    assert len(method.timeouts) == 1


# ------------------------------------------------------------------------------------ webhook consumer
class FakeRunner:
    """Fails ``fail`` times (one per run), then runs until stopped."""

    def __init__(self, script: list[bool]) -> None:
        self.script = script
        self.runs = 0
        self.stopped = threading.Event()

    def open(self, _enqueuer: DeliveryEnqueuer) -> Runner:
        return self

    def run(self) -> object:
        self.runs += 1
        if self.script.pop(0):
            raise RuntimeError("broker went away")
        self.stopped.wait(30)
        return None

    def stop(self) -> None:
        self.stopped.set()


def _worker(runner: FakeRunner, max_restarts: int) -> DeliveryWorker:
    settings = harness.gateway_settings(consumer_max_restarts=max_restarts, consumer_restart_backoff_s=0.001,
                                        consumer_restart_max_backoff_s=0.002)
    return DeliveryWorker(settings, store=None, clock=time.time, open_runner=runner.open)  # type: ignore[arg-type]


async def _until(worker: DeliveryWorker, state: str) -> None:
    for _ in range(1000):  # bounded: ~10 s at most
        if worker.consumer_state == state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"consumer state {worker.consumer_state!r}, wanted {state!r}")


async def test_failing_consumer_is_restarted_with_backoff() -> None:
    restarts = REGISTRY.get_sample_value("gateway_webhook_consumer_restarts_total") or 0.0
    runner = FakeRunner([True, True, False])
    worker = _worker(runner, max_restarts=5)
    task = asyncio.create_task(worker.run_consumer())
    await _until(worker, "running")
    assert runner.runs == 3 and REGISTRY.get_sample_value("gateway_webhook_consumer_up") == 1
    assert REGISTRY.get_sample_value("gateway_webhook_consumer_restarts_total") == restarts + 2
    runner.stop()
    await asyncio.wait_for(task, 10)
    assert worker.consumer_state == "stopped"


async def test_consumer_gives_up_after_the_bounded_restarts() -> None:
    runner = FakeRunner([True] * 10)
    worker = _worker(runner, max_restarts=2)
    await asyncio.wait_for(worker.run_consumer(), 10)
    assert worker.consumer_state == "failed" and runner.runs == 3  # the first run and two restarts
    assert REGISTRY.get_sample_value("gateway_webhook_consumer_up") == 0


# ------------------------------------------------------------------------------------ token cache
def test_verified_token_cache_expires_and_is_bounded() -> None:
    cache = _VerifiedTokens(2)
    who = Principal("acme", "cl_1", frozenset(), "free", "token")
    cache.put("a", who, valid_until=100.0)
    assert cache.get("a", now=99.0) == who and cache.get("a", now=100.0) is None
    for token in ("b", "c", "d"):
        cache.put(token, who, valid_until=100.0)
    assert len(cache) == 2 and cache.get("b", now=0.0) is None


def test_a_cached_token_does_not_vouch_for_a_tampered_one() -> None:
    ring = KeyRing.from_settings(AuthSettings(signing_keys=[harness.new_signing_key("k1")]), time.time)
    token = ring.issue(tenant_id="acme", client_id="cl_1", scopes=frozenset({"assignment:read"}),
                       plan="free").access_token
    assert ring.verify(token) == ring.verify(token)  # the second one from the cache
    head, payload, signature = token.split(".")
    forged = ".".join([head, payload, signature[:-4] + ("AAAA" if signature[-4:] != "AAAA" else "BBBB")])
    with pytest.raises(ProblemError) as info:
        ring.verify(forged)
    assert info.value.status == 401


# ------------------------------------------------------------------------------------ /metrics
async def test_metrics_are_open_labelled_by_route_and_only_there() -> None:
    app = harness.build(harness.gateway_settings(backend="127.0.0.1:1"))
    async with harness.lifespan_client(app) as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/no/such/path/123")).status_code == 404
        assert (await http.post("/v1/assignment/rank", json={"task_id": "t"})).status_code == 401
        scraped = await http.get("/metrics")
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert 'gateway_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'gateway_http_requests_total{method="GET",route="unmatched",status="404"}' in text
    assert 'gateway_http_requests_total{method="POST",route="/v1/assignment/rank",status="401"}' in text
    assert 'gateway_http_request_seconds_bucket{le="0.001",method="GET",route="/healthz"}' in text
    assert "/no/such/path" not in text
    assert "/metrics" not in app.openapi()["paths"]
