"""ONNX == native for both models (the LSTM at two sequence lengths), and incidents vs planted anomalies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from services.anomaly.ensemble import OnnxEnsemble, TenantNorm
from services.anomaly.evaluate import incidents, match
from services.anomaly.train import LstmConfig, fit_iforest, fit_lstm, iforest_onnx, lstm_onnx, lstm_scores

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 5))
SEQS = RNG.normal(size=(120, 6, 5))


@pytest.fixture(scope="module")
def lstm() -> object:
    return fit_lstm(SEQS, LstmConfig(epochs=2, hidden=8))


def test_iforest_onnx_matches_sklearn() -> None:
    forest = fit_iforest(X, trees=20)
    sess = ort.InferenceSession(iforest_onnx(forest, 5), providers=["CPUExecutionProvider"])
    scores = sess.run(None, {"x": X.astype(np.float32)})[1].reshape(-1)
    np.testing.assert_allclose(scores, forest.decision_function(X), atol=1e-4)


def test_lstm_onnx_matches_torch_at_two_lengths(lstm: object) -> None:
    blob = lstm_onnx(lstm, 5)
    graph_input = onnx.load_from_string(blob).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in graph_input[:2]] == ["batch", "steps"]  # both axes stayed dynamic
    sess = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    for steps, batch in ((3, 1), (6, 7), (10, 4)):
        seqs = RNG.normal(size=(batch, steps, 5))
        got = sess.run(None, {"seq": seqs.astype(np.float32)})[0]
        np.testing.assert_allclose(got, lstm_scores(lstm, seqs), rtol=1e-4, atol=1e-5)


def test_ensemble_normalises_per_tenant(lstm: object) -> None:
    forest = fit_iforest(X, trees=10)
    quiet, busy = np.full(50, 1.0), np.full(50, 10.0)
    quiet[::2], busy[::2] = 1.2, 12.0
    norm = TenantNorm.fit(["q"] * 50 + ["b"] * 50, np.concatenate([quiet, busy]))
    z = norm.apply(["q", "b"], np.array([1.2, 12.0]))
    assert z[0] == pytest.approx(z[1])  # the same relative jump scores the same in both tenants
    ens = OnnxEnsemble(iforest_onnx(forest, 5), lstm_onnx(lstm, 5), norm, norm, 0.5, 1.0)
    assert ens.score(["q"] * 4, X[:4], SEQS[:4]).shape == (4,)


@dataclass(frozen=True)
class _A:
    tenant_id: str
    user_id: str
    kind: str
    start: datetime
    end: datetime


def test_hours_group_into_incidents_and_match_planted() -> None:
    h = datetime(2026, 1, 5, 10, tzinfo=UTC)
    alerts = [("t", "u1", h), ("t", "u1", h + timedelta(hours=1)), ("t", "u1", h + timedelta(hours=9)),
              ("t", "u2", h)]
    found = incidents(alerts)
    assert len(found) == 3  # u1's two runs (gap > 2 h) and u2
    planted = [_A("t", "u1", "mass_export", h + timedelta(minutes=20), h + timedelta(minutes=80)),
               _A("t", "u3", "api_scraping", h, h + timedelta(minutes=30))]
    res = match(found, planted)
    overall = res["per_kind"]["overall"]
    assert overall["recall"] == 0.5 and overall["precision"] == pytest.approx(1 / 3)
    assert res["per_kind"]["mass_export"]["median_minutes_to_alert"] == pytest.approx(40.0)  # 11:00 - 10:20
    assert [m["user_id"] for m in res["missed"]] == ["u3"]
