"""The gRPC servicer in-process: scoring, Unavailable without a model, incidents per tenant, ack/resolve."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import grpc.aio
import pytest
from sunday.ml.v1 import anomaly_pb2, anomaly_pb2_grpc

from mesh.config import MeshSettings
from mesh.serving import build_server
from services.anomaly.detector import default_rules
from services.anomaly.ensemble import OnnxEnsemble
from services.anomaly.rules import RuleEngine, Signal
from services.anomaly.server import binding

T = datetime(2026, 1, 5, 10, tzinfo=UTC)


async def _stub(model: OnnxEnsemble | None, engine: RuleEngine) -> AsyncIterator[Any]:
    server = build_server([binding(lambda: model, engine)], MeshSettings(), 0, host="127.0.0.1")
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
