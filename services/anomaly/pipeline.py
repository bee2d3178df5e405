"""From events to a chosen ensemble: hourly vectors, time-ordered split, training, choice on validation.

`train_and_choose` fits both models on the training period only, normalises per tenant on it, and picks
the ensemble weight and the alert threshold by the F1 of incidents vs the planted anomalies of the
validation period (later in time). Baselines are chosen the same way: a per-user z-score (the largest
feature z against the user's own past hours) and the Isolation Forest alone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from mesh.events import Envelope
from services.anomaly.ensemble import FloatArray, OnnxEnsemble, TenantNorm
from services.anomaly.evaluate import Planted, incidents, match
from services.anomaly.features import FEATURES, UserHour, sequences, user_hours
from services.anomaly.train import LstmConfig, fit_iforest, fit_lstm, iforest_onnx, lstm_onnx

SEQ_LEN = 6
WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Dataset:
    rows: list[UserHour]
    seqs: FloatArray

    @classmethod
    def from_events(cls, events: Iterable[Envelope]) -> Dataset:
        rows = user_hours(events)
        return cls(rows, sequences(rows, SEQ_LEN))

    @property
    def vectors(self) -> FloatArray:
        return np.stack([r.vector for r in self.rows]) if self.rows else np.zeros((0, len(FEATURES)))

    @property
    def tenants(self) -> list[str]:
        return [r.tenant_id for r in self.rows]

    def mask(self, lo: datetime | None, hi: datetime | None) -> np.ndarray[Any, np.dtype[np.bool_]]:
        hours = np.array([r.hour.timestamp() for r in self.rows])
        ok = np.ones(len(hours), dtype=bool)
        if lo is not None:
            ok &= hours >= lo.timestamp()
        if hi is not None:
            ok &= hours < hi.timestamp()
        return ok


def zscore_baseline(ds: Dataset, floor: float = 0.5) -> FloatArray:
    """Per row: max over features of (value - user's past mean) / max(user's past std, floor)."""
    past: dict[tuple[str, str], list[FloatArray]] = defaultdict(list)
    out = np.zeros(len(ds.rows))
    for i, r in enumerate(ds.rows):
        hist = past[(r.tenant_id, r.user_id)]
        if len(hist) >= 3:
            h = np.stack(hist)
            out[i] = float(np.max((r.vector - h.mean(axis=0)) / np.maximum(h.std(axis=0), floor)))
        hist.append(r.vector)
    return out


def evaluate(ds: Dataset, scores: FloatArray, sel: np.ndarray[Any, np.dtype[np.bool_]], threshold: float,
             planted: Sequence[Planted]) -> dict[str, Any]:
    alerts = [(r.tenant_id, r.user_id, r.hour) for r, s, m in zip(ds.rows, scores, sel, strict=True)
              if m and s >= threshold]
    return match(incidents(alerts), planted)


def best_threshold(ds: Dataset, scores: FloatArray, sel: np.ndarray[Any, np.dtype[np.bool_]],
                   planted: Sequence[Planted]) -> tuple[float, float]:
    """(threshold, overall F1) maximising F1 on the selected rows; candidates = upper quantiles of scores."""
    cands = np.unique(np.quantile(scores[sel], np.linspace(0.9, 0.9999, 60)))
    best = (float(cands[-1]), -1.0)
    for t in cands:
        f1 = evaluate(ds, scores, sel, float(t), planted)["per_kind"]["overall"]["f1"]
        if f1 > best[1]:
            best = (float(t), float(f1))
    return best


@dataclass
class Trained:
    ensemble: OnnxEnsemble
    z_if: FloatArray
    z_ae: FloatArray
    choices: dict[str, dict[str, float]]  # detector -> {weight?, threshold, validation_f1}


def train_and_choose(ds: Dataset, train_end: datetime, val_end: datetime, planted_val: Sequence[Planted],
                     lstm: LstmConfig | None = None, progress: Callable[[str], None] = print) -> Trained:
    train, val = ds.mask(None, train_end), ds.mask(train_end, val_end)
    x, seqs, tenants = ds.vectors, ds.seqs, ds.tenants
    progress(f"training on {int(train.sum())} user-hours, validating on {int(val.sum())}")
    forest = fit_iforest(x[train])
    model = fit_lstm(seqs[train], lstm or LstmConfig())
    ens = OnnxEnsemble(iforest_onnx(forest, x.shape[1]), lstm_onnx(model, x.shape[1]),
                       TenantNorm({}, (0.0, 1.0)), TenantNorm({}, (0.0, 1.0)), 0.5, 0.0)
    iso, err = ens.raw(x, seqs)
    t_train = [t for t, m in zip(tenants, train, strict=True) if m]
    ens.iforest_norm, ens.lstm_norm = TenantNorm.fit(t_train, iso[train]), TenantNorm.fit(t_train, err[train])
    z_if, z_ae = ens.iforest_norm.apply(tenants, iso), ens.lstm_norm.apply(tenants, err)
    choices: dict[str, dict[str, float]] = {}
    best: tuple[float, float, float] = (0.5, 0.0, -1.0)
    for w in WEIGHTS:
        thr, f1 = best_threshold(ds, w * z_if + (1 - w) * z_ae, val, planted_val)
        progress(f"  weight_iforest={w}: validation F1 {f1:.3f} at threshold {thr:.2f}")
        if f1 > best[2]:
            best = (w, thr, f1)
        if w == 1.0:
            choices["isolation_forest"] = {"threshold": thr, "validation_f1": f1}
    ens.weight_iforest, ens.threshold = best[0], best[1]
    choices["ensemble"] = {"weight_iforest": best[0], "threshold": best[1], "validation_f1": best[2]}
    thr, f1 = best_threshold(ds, zscore_baseline(ds), val, planted_val)
    choices["zscore"] = {"threshold": thr, "validation_f1": f1}
    return Trained(ens, z_if, z_ae, choices)
