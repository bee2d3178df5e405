"""The anomaly service as a real process (`python -m services.anomaly`) on the real broker and Redis.

One run, in order: the service starts with an empty registry (ScoreEntity answers UNAVAILABLE); a tiny champion
is registered and picked up; half of a simulated week with planted anomalies is
published with a malformed record; the process is SIGKILLed mid-stream, the rest is published, the process
restarted. Then: the malformed record is in the DLQ; the alerts on ml.alerts are exactly the offline
detector's (same deterministic ids: none missing, none extra, whatever the crash redelivered), each with
evidence, window and model version; every planted anomaly the detector catches is ONE incident; incidents
are listed and acknowledged, and the tenant's rules read and changed, over gRPC.

Topics under a prefix of the test's own on the local stack (its state is under the matching Redis
namespace); the model in a temporary MLflow registry.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import redis
from sunday.ml.v1 import anomaly_pb2, anomaly_pb2_grpc

from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, decode, occurred_at
from mesh.models import CHAMPION, ModelRegistry
from services.anomaly.demo import incidents_of
from services.anomaly.detector import alerts_for
from services.anomaly.ensemble import OnnxEnsemble, TenantNorm
from services.anomaly.evaluate import _overlaps
from services.anomaly.model import MODEL_NAME, export_ensemble
from services.anomaly.pipeline import SEQ_LEN, Dataset, best_threshold
from services.anomaly.train import fit_iforest, iforest_onnx
from simulator import SimConfig, Simulation
from tests.services_harness import Registry, ServiceProcess, service_env
from tests.support import drain

pytestmark = pytest.mark.integration


@dataclass
class World:
    events: list[Envelope]
    planted: list[Any]
    ensemble: OnnxEnsemble
    onnx_path: Path


def _sequence_standin(n_features: int) -> bytes:
    """A torch-free stand-in for the LSTM autoencoder with its ONNX interface (``seq`` [batch, steps, features]
    -> ``recon_error`` [batch]): the mean square of the newest hour's vector. The real autoencoder is covered
    by the unit tests (ONNX == torch); here it would cost a torch import and a fit per run."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["seq", "last"], ["newest"], axis=1),
         helper.make_node("Mul", ["newest", "newest"], ["squared"]),
         helper.make_node("ReduceMean", ["squared"], ["recon_error"], axes=[1], keepdims=0)],
        "sequence_standin",
        [helper.make_tensor_value_info("seq", TensorProto.FLOAT, ["batch", "steps", n_features])],
        [helper.make_tensor_value_info("recon_error", TensorProto.FLOAT, ["batch"])],
        [helper.make_tensor("last", TensorProto.INT64, [], [-1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """A week of one tenant with planted anomalies and a tiny ensemble fitted on it (seconds)."""
    sim = Simulation(SimConfig(tenants=1, users_per_tenant=16, weeks=1, seed=5, anomaly_user_fraction=0.4))
    events = [ev for ev in sim.events() if ev.WhichOneof("payload") == "user_activity"]
    ds = Dataset.from_events(events)
    x = ds.vectors
    ens = OnnxEnsemble(iforest_onnx(fit_iforest(x, trees=20), x.shape[1]),
                       _sequence_standin(x.shape[1]),
                       TenantNorm({}, (0.0, 1.0)), TenantNorm({}, (0.0, 1.0)), 0.5, 0.0, version="1")
    iso, err = ens.raw(x, ds.seqs)
    ens.iforest_norm, ens.lstm_norm = TenantNorm.fit(ds.tenants, iso), TenantNorm.fit(ds.tenants, err)
    z_if, z_ae = ens.components(ds.tenants, x, ds.seqs)
    planted = list(sim.truth.anomalies)
    ens.threshold, _ = best_threshold(ds, 0.5 * z_if + 0.5 * z_ae, np.ones(len(ds.rows), dtype=bool), planted)
    path = export_ensemble(ens, tmp_path_factory.mktemp("anomaly-model") / "anomaly.onnx", SEQ_LEN)
    return World(events, planted, ens, path)


def _expected(w: World) -> list[Envelope]:
    """The offline detector's alerts, less those of each user's last hour (the service scores an hour when
    the user's next one starts; the offline pass also closes the last hours at the end of the stream)."""
    offline, _ = alerts_for(w.events, w.ensemble)
    last = {}
    for ev in w.events:
        last[(ev.tenant_id, ev.user_activity.user_id)] = occurred_at(ev)
    return [a for a in offline if occurred_at(a) <= last[(a.tenant_id, a.alert.subject_id)]]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[MeshSettings, Registry]]:
    settings = MeshSettings()
    settings.kafka.topic_prefix = f"test-anom-{uuid.uuid4().hex[:8]}."
    settings.kafka.connect_timeout_s = 20
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path / "artifacts")
    yield settings, registry
    client = redis.Redis.from_url(settings.redis.url)
    for key in client.scan_iter(match=f"{settings.namespace}:*", count=1000):
        client.delete(key)


def _alerts(settings: MeshSettings, registry: TopicRegistry, want: set[str]) -> list[Envelope]:
    def enough(msgs: list[Any]) -> bool:
        return want <= {decode(m.value).event_id for m in msgs if m.value}

    msgs = drain(settings.kafka, registry.physical("alerts"), 100_000, enough, timeout_s=120)
    return [decode(m.value) for m in msgs if m.value]


def test_a_week_in_alerts_out_once_through_a_crash(world: World, stack: tuple[MeshSettings, Registry],
                                                   tmp_path: Path) -> None:
    settings, models = stack
    topics = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, topics, ["activity", "alerts", "dlq"])
    env = service_env(models, settings.redis.url, settings.kafka.bootstrap_servers, settings.kafka.topic_prefix,
                      tmp_path / "offline", MESH_MODELS__RELOAD_INTERVAL_S="1")
    expected = _expected(world)
    assert len(expected) >= 3
    tenant = world.events[0].tenant_id
    user = world.events[0].user_activity.user_id
    with ServiceProcess("anomaly", env, tmp_path / "logs") as svc:
        svc.start()
        svc.wait_serving()
        with grpc.insecure_channel(f"127.0.0.1:{svc.port}") as channel:  # no champion yet
            stub = anomaly_pb2_grpc.AnomalyServiceStub(channel)
            with pytest.raises(grpc.RpcError) as err:
                stub.ScoreEntity(anomaly_pb2.ScoreEntityRequest(tenant_id=tenant, user_id=user,
                                                                events=world.events[:5]), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        ModelRegistry(models.settings()).log_and_register(MODEL_NAME, world.onnx_path, {}, {"purpose": "tests"},
                                                          (occurred_at(world.events[0]),
                                                           occurred_at(world.events[-1])), alias=CHAMPION)

        publisher = KafkaPublisher(settings.kafka, topics)
        half = len(world.events) // 2
        for ev in world.events[:half]:
            publisher.publish(ev)
        malformed = world.events[0].__deepcopy__()
        malformed.event_id = str(uuid.uuid4())
        malformed.user_activity.action = ""
        publisher.publish_raw("activity", malformed.SerializeToString(), b"bad", [])
        publisher.flush()
        dlq = drain(settings.kafka, topics.physical("dlq"), 1, timeout_s=60)
        assert [m.value for m in dlq] == [malformed.SerializeToString()]
        first = {a.event_id for a in expected if occurred_at(a) < occurred_at(world.events[half // 2])}
        _alerts(settings, topics, first)  # the champion was picked up and the stream is under way

        svc.kill()  # mid-stream: whatever was handled but not committed is redelivered after the restart
        for ev in world.events[half:]:
            publisher.publish(ev)
        publisher.flush()
        publisher.close()
        svc.start()
        svc.wait_serving()
        got = _alerts(settings, topics, {a.event_id for a in expected})

        with grpc.insecure_channel(f"127.0.0.1:{svc.port}") as channel:
            stub = anomaly_pb2_grpc.AnomalyServiceStub(channel)
            listed = stub.ListIncidents(anomaly_pb2.ListIncidentsRequest(tenant_id=tenant, include_resolved=True),
                                        timeout=10).incidents
            scored = stub.ScoreEntity(anomaly_pb2.ScoreEntityRequest(tenant_id=tenant, user_id=user,
                                                                     events=world.events[:40]), timeout=10)
            acked = stub.Acknowledge(anomaly_pb2.IncidentActionRequest(tenant_id=tenant,
                                                                       incident_id=listed[0].incident_id), timeout=10)
            rules = stub.GetRules(anomaly_pb2.GetRulesRequest(tenant_id=tenant), timeout=10)
            changed = stub.PutRules(anomaly_pb2.PutRulesRequest(tenant_id=tenant, rules_yaml=rules.rules_yaml,
                                                                expected_version=rules.version, actor="admin@test"),
                                    timeout=10)
        assert svc.kills == 1 and "Traceback" not in svc.log_text()

    assert {a.event_id for a in got} == {a.event_id for a in expected}  # none missing, none extra
    by_id = {a.event_id: a.alert for a in got}
    for want in expected:  # the same alert as offline, redelivered or not
        have = by_id[want.event_id]
        assert (have.rule, have.severity, have.incident_id, have.subject_id, list(have.window_keys)) == \
            (want.alert.rule, want.alert.severity, want.alert.incident_id, want.alert.subject_id,
             list(want.alert.window_keys))
        assert have.score == pytest.approx(want.alert.score, abs=1e-3)
    for a in got:
        assert a.alert.provenance.model_version == "1" and a.alert.incident_id and a.alert.dedup_key
        if a.alert.rule == "unusual_activity":
            assert {c.feature for c in a.alert.evidence} >= {"isolation_forest_z", "lstm_autoencoder_z"}
            assert a.alert.window_keys
    found = incidents_of(got)
    caught = [p for p in world.planted if any(_overlaps(inc, p) for inc in found)]
    assert caught, "no planted anomaly became an incident"
    for p in caught:  # each planted anomaly alerted as ONE incident, not one per window
        assert sum(_overlaps(inc, p) for inc in found) == 1, p
    assert {i.incident_id for i in listed} == {a.alert.incident_id for a in got}
    assert scored.prediction.provenance.model_version == "1"
    assert acked.incident.status == "acknowledged"
    assert (rules.version, changed.version, changed.updated_by) == (0, 1, "admin@test")
