"""The Analytics RPC in-process over the real approval store (the local stack's Redis, a namespace of the test's
own): the weeks the store counted, per tenant, zeros for quiet weeks, and bad ``weeks`` refused."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import grpc
import grpc.aio
import pytest
import pytest_asyncio
from sunday.ml.v1 import automation_pb2 as api
from sunday.ml.v1 import automation_pb2_grpc as api_grpc

from mesh.bus import InMemoryBroker, Publisher
from mesh.config import MeshSettings
from mesh.events import TopicRegistry
from mesh.serving import build_server
from services.automation.approval import ApprovalStore, SuggestionRecord, weeks_ending
from services.automation.handlers import AutomationHandler
from services.automation.model import VersionedScorer
from services.automation.server import binding
from services.automation.state import FactStore
from services.automation.validate import Validator
from tests.unit.automation._model import NoModel

NOW = datetime(2026, 1, 14, 12, tzinfo=UTC).timestamp()  # a Wednesday of ISO week 2026-W03
WEEK = 7 * 86400
RECORD = SuggestionRecord("t1", "s", "u1", "task_created", "task_type=bug", ("a:b", "c:d"), ("p1",), 9, 0.9,
                          actions_per_week=6.0)





@pytest_asyncio.fixture
async def stub(store: ApprovalStore) -> AsyncIterator[Any]:
    facts = FactStore()
    handler = AutomationHandler(facts, store, Publisher(InMemoryBroker().producer(), TopicRegistry()),
                                VersionedScorer(NoModel()))
    server = build_server([binding(handler, Validator(facts), clock=lambda: NOW)], MeshSettings(), 0,
                          host="127.0.0.1")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield api_grpc.AutomationServiceStub(channel)
    await server.stop(0)


def test_weeks_ending_are_iso_weeks_with_their_mondays() -> None:
    assert [(k, d.isoformat()) for k, d in weeks_ending(NOW, 3)] == [
        ("2026-W01", "2025-12-29"), ("2026-W02", "2026-01-05"), ("2026-W03", "2026-01-12")]


async def test_analytics_reads_the_weeks_the_store_counted(store: ApprovalStore, stub: Any) -> None:
    # two weeks ago: 2 shown, 1 approved; this week: 3 shown, 1 approved, 1 rejected, 1 expired
    for i in range(2):
        store.offer(replace(RECORD, suggestion_id=f"old{i}"), NOW - 2 * WEEK)
    store.transition("t1", "old0", "approved", NOW - 2 * WEEK, by="u1")
    for i in range(3):
        store.offer(replace(RECORD, suggestion_id=f"s{i}", actions_per_week=2.5), NOW)
    store.transition("t1", "s0", "approved", NOW, by="u1")
    store.transition("t1", "s1", "rejected", NOW, by="u1")
    store.transition("t1", "s2", "expired", NOW)
    store.offer(replace(RECORD, tenant_id="t2", suggestion_id="x"), NOW)  # another tenant's

    got = await stub.Analytics(api.AnalyticsRequest(tenant_id="t1", weeks=3))
    rows = [(w.iso_week, w.week_start, w.shown, w.accepted, w.rejected, w.expired, w.actions_saved_estimate)
            for w in got.weeks]
    assert rows == [("2026-W01", "2025-12-29", 2, 1, 0, 0, 6.0),
                    ("2026-W02", "2026-01-05", 0, 0, 0, 0, 0.0),
                    ("2026-W03", "2026-01-12", 3, 1, 1, 1, 2.5)]
    default = await stub.Analytics(api.AnalyticsRequest(tenant_id="t1"))
    assert [w.iso_week for w in default.weeks] == ["2025-W52", "2026-W01", "2026-W02", "2026-W03"]
    other = await stub.Analytics(api.AnalyticsRequest(tenant_id="t2", weeks=1))
    assert [(w.shown, w.accepted) for w in other.weeks] == [(1, 0)]


@pytest.mark.parametrize("request_", [api.AnalyticsRequest(tenant_id="t1", weeks=53),
                                      api.AnalyticsRequest(tenant_id="", weeks=2)])
async def test_bad_analytics_requests_are_invalid_argument(stub: Any, request_: api.AnalyticsRequest) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.Analytics(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("weeks must be between 1 and 52" if request_.tenant_id else "tenant_id is required") in (
        err.value.details() or "")
