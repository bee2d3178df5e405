from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import grpc.aio
import pytest

from mesh.config import MeshSettings
from mesh.errors import NotFound, Unavailable
from mesh.serving import RetryPolicy, ServiceBinding, build_server, call_with_retry, channel, domain_error

SERVICE = "test.Flaky"
FlakyCall = tuple["Flaky", grpc.aio.UnaryUnaryMultiCallable]
FAST = RetryPolicy(max_attempts=4, initial_backoff_s=0.001, max_backoff_s=0.01)


class Flaky:
    """Fails the first ``failures`` calls with ``error`` (or hangs, for deadline tests)."""

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0
        self.error: Exception | None = None
        self.hang_first = False

    async def call(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        self.calls += 1
        if self.hang_first and self.calls == 1:
            await asyncio.Event().wait()  # never answers: the client's attempt timeout ends it
        if self.calls <= self.failures and self.error is not None:
            raise self.error
        return b"ok"

    def binding(self) -> ServiceBinding:
        methods = {"Call": grpc.unary_unary_rpc_method_handler(self.call)}
        handler = grpc.method_handlers_generic_handler(SERVICE, methods)
        return ServiceBinding(SERVICE, lambda server: server.add_generic_rpc_handlers((handler,)))


@pytest.fixture
async def flaky_call() -> AsyncIterator[FlakyCall]:
    flaky = Flaky()
    server = build_server([flaky.binding()], MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield flaky, chan.unary_unary(f"/{SERVICE}/Call")
    await server.stop(0)


async def test_unavailable_is_retried_until_success(flaky_call: FlakyCall) -> None:
    flaky, method = flaky_call
    flaky.failures, flaky.error = 2, Unavailable("warming up")
    assert await call_with_retry(method, b"", deadline_s=10, policy=FAST) == b"ok"
    assert flaky.calls == 3


async def test_other_codes_are_not_retried(flaky_call: FlakyCall) -> None:
    flaky, method = flaky_call
    flaky.failures, flaky.error = 1, NotFound("no such task")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_with_retry(method, b"", deadline_s=10, policy=FAST)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert flaky.calls == 1
    assert isinstance(domain_error(caught.value), NotFound)


async def test_gives_up_after_max_attempts(flaky_call: FlakyCall) -> None:
    flaky, method = flaky_call
    flaky.failures, flaky.error = 100, Unavailable("down")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call_with_retry(method, b"", deadline_s=10, policy=FAST)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert flaky.calls == FAST.max_attempts


async def test_an_attempt_past_its_timeout_is_retried(flaky_call: FlakyCall) -> None:
    flaky, method = flaky_call
    flaky.hang_first = True
    policy = RetryPolicy(initial_backoff_s=0.001, attempt_timeout_s=0.2)
    assert await call_with_retry(method, b"", deadline_s=10, policy=policy) == b"ok"
    assert flaky.calls == 2


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff_s=0.1, multiplier=2, max_backoff_s=0.3, jitter=0)
    assert [policy.backoff_s(n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.2, 0.3, 0.3])


async def test_translated_errors_are_domain_errors_the_bus_classifies(flaky_call: FlakyCall) -> None:
    from mesh.bus import classify

    flaky, call = flaky_call
    flaky.failures, flaky.error = 100, Unavailable("feature store restarting")
    with pytest.raises(Unavailable, match="UNAVAILABLE") as outage:
        await call_with_retry(call, b"x", 5.0, FAST, translate_errors=True)
    assert classify(outage.value).transient  # held and retried by a consumer, never dead-lettered
    flaky.calls, flaky.error = 0, NotFound("no such task")
    with pytest.raises(NotFound, match="no such task") as missing:
        await call_with_retry(call, b"x", 5.0, FAST, translate_errors=True)
    assert not classify(missing.value).transient
