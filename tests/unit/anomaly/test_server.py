"""The gRPC servicer in-process: scoring, Unavailable without a model, incidents per tenant, ack/resolve,
per-tenant rules (validated, versioned, audited) in the local stack's Redis under a namespace of the test's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
import redis
from sunday.ml.v1 import anomaly_pb2, anomaly_pb2_grpc

from mesh.config import MeshSettings
from mesh.serving import build_server
from services.anomaly.detector import default_rules
from services.anomaly.ensemble import OnnxEnsemble
from services.anomaly.rules import RuleEngine, Signal
from services.anomaly.rules_store import RulesStore
from services.anomaly.server import binding

T = datetime(2026, 1, 5, 10, tzinfo=UTC)


async def _stub(model: OnnxEnsemble | None, engine: RuleEngine, rules: RulesStore | None = None) -> AsyncIterator[Any]:
    store = rules or RulesStore(redis.Redis.from_url(MeshSettings().redis.url), f"test-{uuid.uuid4().hex[:10]}")
    server = build_server([binding(lambda: model, engine, store)], MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield anomaly_pb2_grpc.AnomalyServiceStub(channel)
    await server.stop(0)


def _engine() -> RuleEngine:
    eng = RuleEngine(default_rules(), model_version="3")
    for i, (tenant, user) in enumerate([("ta", "u1"), ("tb", "u9")]):
        eng.observe(Signal(tenant, user, T + timedelta(minutes=i), f"00000000-0000-4000-8000-00000000000{i}",
                           score=5.0))
    return eng


async def test_score_entity_without_a_model_is_unavailable(world: tuple[Any, list[Any], OnnxEnsemble]) -> None:
    _, events, _ = world
    user = next(ev for ev in events if ev.WhichOneof("payload") == "user_activity")
    async for stub in _stub(None, _engine()):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ScoreEntity(anomaly_pb2.ScoreEntityRequest(tenant_id=user.tenant_id,
                                                                  user_id=user.user_activity.user_id, events=[user]))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_score_entity_scores_the_newest_hour(world: tuple[Any, list[Any], OnnxEnsemble]) -> None:
    _, events, model = world
    first = next(ev for ev in events if ev.WhichOneof("payload") == "user_activity")
    mine = [ev for ev in events if ev.WhichOneof("payload") == "user_activity"
            and ev.user_activity.user_id == first.user_activity.user_id][:40]
    async for stub in _stub(model, _engine()):
        resp = await stub.ScoreEntity(anomaly_pb2.ScoreEntityRequest(
            tenant_id=first.tenant_id, user_id=first.user_activity.user_id, events=mine))
        assert resp.prediction.provenance.model_version == "t1"
        assert [c.feature for c in resp.prediction.components] == ["isolation_forest_z", "lstm_autoencoder_z"]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ScoreEntity(anomaly_pb2.ScoreEntityRequest(tenant_id=first.tenant_id, user_id="nobody",
                                                                  events=mine))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_incidents_are_per_tenant_and_can_be_acknowledged_and_resolved() -> None:
    eng = _engine()
    async for stub in _stub(None, eng):
        listed = (await stub.ListIncidents(anomaly_pb2.ListIncidentsRequest(tenant_id="ta"))).incidents
        assert [(i.tenant_id, i.entity_id, i.status) for i in listed] == [("ta", "u1", "open")]
        other = next(i for i in eng.state.incidents.values() if i.tenant_id == "tb")
        with pytest.raises(grpc.aio.AioRpcError) as err:  # tenant ta cannot touch tb's incident
            await stub.Acknowledge(anomaly_pb2.IncidentActionRequest(tenant_id="ta", incident_id=other.incident_id))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        inc_id = listed[0].incident_id
        ack = await stub.Acknowledge(anomaly_pb2.IncidentActionRequest(tenant_id="ta", incident_id=inc_id))
        assert ack.incident.status == "acknowledged"
        await stub.Resolve(anomaly_pb2.IncidentActionRequest(tenant_id="ta", incident_id=inc_id))
        assert not (await stub.ListIncidents(anomaly_pb2.ListIncidentsRequest(tenant_id="ta"))).incidents
        shown = await stub.ListIncidents(anomaly_pb2.ListIncidentsRequest(tenant_id="ta", include_resolved=True))
        assert [i.status for i in shown.incidents] == ["resolved"]


@pytest.fixture
def rules_store() -> Iterator[RulesStore]:
    client = redis.Redis.from_url(MeshSettings().redis.url)
    ns = f"test-{uuid.uuid4().hex[:10]}"
    yield RulesStore(client, ns)
    for key in client.scan_iter(match=f"{ns}:*", count=10_000):
        client.delete(key)


NEW_RULES = """
cooldown_minutes: 30
rules:
  - {name: unusual_activity, kind: score, thresholds: {warning: 1.0, critical: 5.0}}
"""


async def test_rules_are_per_tenant_versioned_validated_and_audited(rules_store: RulesStore) -> None:
    async for stub in _stub(None, _engine(), rules_store):
        first = await stub.GetRules(anomaly_pb2.GetRulesRequest(tenant_id="ta"))
        assert (first.version, first.updated_by) == (0, "")  # the defaults until the tenant sets its own
        assert "bulk_delete_burst" in first.rules_yaml

        with pytest.raises(grpc.aio.AioRpcError) as err:  # a bad rule file: the field is named, nothing stored
            await stub.PutRules(anomaly_pb2.PutRulesRequest(
                tenant_id="ta", expected_version=0, actor="admin@ta",
                rules_yaml="rules:\n  - {name: burst, kind: static, action: x, min_events: 0, within_minutes: 5}\n"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        detail = err.value.details() or ""
        assert "rules_yaml" in detail and "rules.0.static.min_events" in detail
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.PutRules(anomaly_pb2.PutRulesRequest(tenant_id="ta", rules_yaml=NEW_RULES, expected_version=0))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "actor" in (err.value.details() or "")

        put = await stub.PutRules(anomaly_pb2.PutRulesRequest(tenant_id="ta", rules_yaml=NEW_RULES,
                                                              expected_version=0, actor="admin@ta"))
        assert (put.version, put.updated_by, put.rules_yaml) == (1, "admin@ta", NEW_RULES)
        assert put.updated_at_unix > 0
        got = await stub.GetRules(anomaly_pb2.GetRulesRequest(tenant_id="ta"))
        assert (got.version, got.rules_yaml) == (1, NEW_RULES)
        assert (await stub.GetRules(anomaly_pb2.GetRulesRequest(tenant_id="tb"))).version == 0  # tb untouched
        assert rules_store.get("ta").rules.cooldown_minutes == 30

        with pytest.raises(grpc.aio.AioRpcError) as err:  # a change made against version 0 is stale now
            await stub.PutRules(anomaly_pb2.PutRulesRequest(tenant_id="ta", rules_yaml=first.rules_yaml,
                                                            expected_version=0, actor="other@ta"))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (await stub.GetRules(anomaly_pb2.GetRulesRequest(tenant_id="ta"))).rules_yaml == NEW_RULES

        again = await stub.PutRules(anomaly_pb2.PutRulesRequest(tenant_id="ta", rules_yaml=first.rules_yaml,
                                                                expected_version=1, actor="other@ta"))
        assert again.version == 2
    trail = rules_store.audit("ta")
    assert [(a.actor, a.old_version, a.new_version) for a in trail] == [("admin@ta", 0, 1), ("other@ta", 1, 2)]
    assert trail[0].new_sha256 == trail[1].old_sha256 != trail[1].new_sha256
    assert rules_store.audit("tb") == []
