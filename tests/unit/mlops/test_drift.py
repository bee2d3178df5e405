"""Drift against the training reference: PSI and KS equal a hand computation; a tenant's drift alerts once
and clears once (hysteresis), with ids that do not depend on how often the window was evaluated."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mesh.events import Envelope
from mesh.mlops import (
    KIND_CLEARED,
    KIND_DRIFT,
    PREDICTION,
    DriftMonitor,
    DriftPolicy,
    DriftReference,
    build_reference,
    evaluate,
)

EPS = 1e-4


def reference() -> DriftReference:
    # numeric column 0..99 on 4 quantile bins (25 values each); a 0/1 flag half and half; prediction 0..99
    x = np.column_stack([np.arange(100.0), np.arange(100) % 2])
    return build_reference(x, ["hours", "flag"], np.arange(100.0), bins=4, sample=1000)


def test_reference_bins_and_round_trip() -> None:
    ref = reference()
    hours, flag = ref.features
    assert hours.kind == "numeric" and hours.edges == pytest.approx((24.75, 49.5, 74.25))
    assert hours.expected == pytest.approx((0.25, 0.25, 0.25, 0.25))
    assert flag.kind == "categorical" and flag.edges == (0.0, 1.0) and flag.expected == pytest.approx((0.5, 0.5, 0.0))
    assert DriftReference.from_dict(ref.to_dict()) == ref


def test_psi_and_ks_equal_a_hand_computation() -> None:
    ref = reference()
    # served: hours all in the first bin (0..24), the flag 90% ones, predictions spread like training
    served = np.column_stack([np.arange(100.0) % 25, (np.arange(100) % 10 != 0).astype(float)])
    report = evaluate(ref, served, np.arange(100.0))
    hand_hours = (1 - 0.25) * math.log(1 / 0.25) + 3 * (EPS - 0.25) * math.log(EPS / 0.25)
    hand_flag = (0.1 - 0.5) * math.log(0.1 / 0.5) + (0.9 - 0.5) * math.log(0.9 / 0.5)  # "other" bin: 0 both sides
    assert report.psi["hours"] == pytest.approx(hand_hours)
    assert report.psi["flag"] == pytest.approx(hand_flag)
    assert report.prediction_psi == pytest.approx(0.0)
    # KS: served CDF reaches 1 at 24 where the training CDF is 25/100
    assert report.ks == {"hours": pytest.approx(0.75)}
    assert report.score == pytest.approx(hand_hours) and report.top(1) == [("hours", pytest.approx(hand_hours))]
    assert PREDICTION in dict(report.top(3))


def feed(monitor: DriftMonitor, tenant: str, drifted: bool, rows: int = 100) -> None:
    hours = np.arange(rows, dtype=float) % (25 if drifted else 100)
    monitor.observe("ranker", "3", tenant, np.column_stack([hours, np.arange(rows) % 2]), np.arange(rows, dtype=float))


def test_drift_alerts_once_and_clears_once_per_tenant() -> None:
    emitted: list[Envelope] = []
    policy = DriftPolicy(threshold=0.25, hysteresis=0.1, window=100, min_rows=100, every=100)
    monitor = DriftMonitor("assignment", lambda name, version: reference(), emitted.append, policy)
    feed(monitor, "t-ok", drifted=False)
    assert emitted == []
    feed(monitor, "t-drift", drifted=True)
    feed(monitor, "t-drift", drifted=True)  # still drifted: no second alert
    assert [e.alert.kind for e in emitted] == [KIND_DRIFT]
    first = emitted[0]
    assert first.tenant_id == "t-drift" and first.alert.evidence[0].feature == "hours"
    assert first.alert.provenance.model_version == "3" and monitor.active("ranker", "t-drift")
    feed(monitor, "t-drift", drifted=False)
    feed(monitor, "t-drift", drifted=False)
    assert [e.alert.kind for e in emitted] == [KIND_DRIFT, KIND_CLEARED]
    assert not monitor.active("ranker", "t-drift")
    feed(monitor, "t-drift", drifted=True)  # drifts again: a new activation, a new id
    assert [e.alert.kind for e in emitted] == [KIND_DRIFT, KIND_CLEARED, KIND_DRIFT]
    assert len({e.event_id for e in emitted}) == 3
    # deterministic: another process fed the same way publishes the same ids
    again: list[Envelope] = []
    other = DriftMonitor("assignment", lambda name, version: reference(), again.append, policy)
    for drifted in (True, True, False, False, True):
        feed(other, "t-drift", drifted)
    assert [e.event_id for e in again] == [e.event_id for e in emitted]


def test_hysteresis_band_keeps_the_alert_active() -> None:
    emitted: list[Envelope] = []
    policy = DriftPolicy(threshold=0.25, hysteresis=0.2, window=100, min_rows=100, every=100)
    monitor = DriftMonitor("assignment", lambda name, version: reference(), emitted.append, policy)
    feed(monitor, "t", drifted=True)
    # half drifted: PSI between threshold - hysteresis and threshold -> neither a new alert nor a clear
    hours = np.concatenate([np.arange(40.0) % 25, 25 + np.arange(20.0), 50 + np.arange(20.0), 75 + np.arange(20.0)])
    report = monitor.observe("ranker", "3", "t", np.column_stack([hours, np.arange(100) % 2]), np.arange(100.0))
    hand = 0.15 * math.log(0.4 / 0.25) + 3 * (0.2 - 0.25) * math.log(0.2 / 0.25)  # shares 0.4/0.2/0.2/0.2
    assert report is not None and report.score == pytest.approx(hand) and 0.05 <= hand < 0.25
    assert [e.alert.kind for e in emitted] == [KIND_DRIFT] and monitor.active("ranker", "t")


def test_a_version_without_reference_is_not_evaluated() -> None:
    emitted: list[Envelope] = []
    monitor = DriftMonitor("assignment", lambda name, version: None, emitted.append,
                           DriftPolicy(window=100, min_rows=100, every=100))
    feed(monitor, "t", drifted=True)
    assert emitted == []
