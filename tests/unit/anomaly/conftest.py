"""A tiny simulated world with a tiny trained ensemble (ONNX), built once per session for these tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from services.anomaly.ensemble import OnnxEnsemble, TenantNorm
from services.anomaly.pipeline import Dataset, best_threshold
from services.anomaly.train import LstmConfig, fit_iforest, fit_lstm, iforest_onnx, lstm_onnx
from simulator import SimConfig, Simulation


@pytest.fixture(scope="session")
def world() -> tuple[Any, list[Any], OnnxEnsemble]:
    sim = Simulation(SimConfig(tenants=1, users_per_tenant=20, weeks=2, seed=3, anomaly_user_fraction=0.3))
    events = list(sim.events())
    ds = Dataset.from_events(events)
    x = ds.vectors
    ens = OnnxEnsemble(iforest_onnx(fit_iforest(x, trees=20), x.shape[1]),
                       lstm_onnx(fit_lstm(ds.seqs, LstmConfig(epochs=2, hidden=8)), x.shape[1]),
                       TenantNorm({}, (0.0, 1.0)), TenantNorm({}, (0.0, 1.0)), 0.5, 0.0, version="t1")
    iso, err = ens.raw(x, ds.seqs)
    ens.iforest_norm, ens.lstm_norm = TenantNorm.fit(ds.tenants, iso), TenantNorm.fit(ds.tenants, err)
    z_if, z_ae = ens.components(ds.tenants, x, ds.seqs)
    everything = np.ones(len(ds.rows), dtype=bool)
    ens.threshold, _ = best_threshold(ds, 0.5 * z_if + 0.5 * z_ae, everything, list(sim.truth.anomalies))
    return sim, events, ens


