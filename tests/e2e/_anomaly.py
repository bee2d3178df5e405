"""The REAL anomaly servicer for the gateway's e2e tests: a tiny ensemble trained once per test session
(Isolation Forest + LSTM autoencoder, both ONNX, on a simulated week), a rules engine holding incidents of
one tenant, and the per-tenant rules store on the local Redis under a namespace of its own."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from mesh.config import MeshSettings
from mesh.serving import ServiceBinding
from services.anomaly.detector import default_rules
from services.anomaly.ensemble import OnnxEnsemble, TenantNorm
from services.anomaly.pipeline import Dataset
from services.anomaly.rules import RuleEngine, Signal
from services.anomaly.rules_store import RulesStore
from services.anomaly.server import binding
from services.anomaly.train import LstmConfig, fit_iforest, fit_lstm, iforest_onnx, lstm_onnx
from simulator import SimConfig, Simulation

PEOPLE = ("alice", "bob")
"""The people of the seeded tenant whose incidents are open."""


@functools.cache
def tiny_ensemble() -> OnnxEnsemble:
    events = list(Simulation(SimConfig(tenants=1, users_per_tenant=8, weeks=1, seed=5)).events())
    ds = Dataset.from_events(events)
    x = ds.vectors
    ens = OnnxEnsemble(iforest_onnx(fit_iforest(x, trees=10), x.shape[1]),
                       lstm_onnx(fit_lstm(ds.seqs, LstmConfig(epochs=1, hidden=8)), x.shape[1]),
                       TenantNorm({}, (0.0, 1.0)), TenantNorm({}, (0.0, 1.0)), 0.5, 0.0, version="e2e-1")
    iso, err = ens.raw(x, ds.seqs)
    ens.iforest_norm, ens.lstm_norm = TenantNorm.fit(ds.tenants, iso), TenantNorm.fit(ds.tenants, err)
    return ens


@dataclass
class AnomalyService:
    binding: ServiceBinding
    incident_ids: list[str]
    """the seeded tenant's open incidents, one per person of PEOPLE"""
    rules: RulesStore
    cleanup: Callable[[], None]


def anomaly_service(tenant: str) -> AnomalyService:
    engine = RuleEngine(default_rules(), model_version="e2e-1")
    start = datetime.now(UTC) - timedelta(hours=1)
    for i, person in enumerate(PEOPLE):
        engine.observe(Signal(tenant, person, start + timedelta(minutes=i), str(uuid.uuid4()), score=5.0))
    ids = sorted(inc.incident_id for inc in engine.state.incidents.values() if inc.tenant_id == tenant)
    client = redis.Redis.from_url(MeshSettings().redis.url)
    namespace = f"it-gw-anomaly-{uuid.uuid4().hex[:10]}"
    rules = RulesStore(client, namespace)
    model = tiny_ensemble()

    def cleanup() -> None:
        for key in client.scan_iter(match=f"{namespace}:*"):
            client.delete(key)
        client.close()

    return AnomalyService(binding(lambda: model, engine, rules), ids, rules, cleanup)
