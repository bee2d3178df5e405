"""Data and prediction drift per tenant against the training reference stored with each model version.

At registration the training distribution of every input feature and of the prediction is summarised
(:func:`build_reference`): for each column its kind, the bins (quantile edges for a numeric column, the
values for a categorical one), the share of training rows in each bin and a fixed-size random sample. It is
stored as a JSON artifact of the version's run (``Challenger.reference`` -> ``mlops/drift_reference.json``).

At serving, :class:`DriftMonitor` keeps the last ``window`` rows of each tenant (a rolling window over
rows served) and, every ``every`` new rows once ``min_rows`` are there, computes per column:

- PSI = sum over bins of (a - e) * ln(a / e), a/e the served/training shares (clipped at ``EPS``), for
  every column (numeric columns on their training quantile bins, categorical ones on their values plus
  an "other" bin);
- the two-sample Kolmogorov-Smirnov statistic against the training sample, for numeric columns.

They are exported as Prometheus gauges (``mesh_model_drift_psi``, ``mesh_model_drift_ks``,
``mesh_model_prediction_drift_psi``, ``mesh_model_drift_active``, labels model/version/tenant[/feature]). The
tenant's drift score is the largest PSI over its columns and the prediction; past ``DriftPolicy.threshold``
a ``model_drift`` alert is published on ``ml.alerts`` once, and a ``model_drift_cleared`` once when the
score falls below ``threshold - hysteresis``. Alert ids are derived from the dedup key and the count of
activations of the (model, tenant) pair, so a re-evaluation never publishes a second id for one crossing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from prometheus_client import Gauge
from pydantic import BaseModel, Field
from scipy import stats  # type: ignore[import-untyped]
from sunday.ml.v1 import common_pb2, events_pb2

from mesh.events import Envelope, derived_event_id, new_envelope
from mesh.models._lifecycle import DRIFT_REFERENCE_FILE

if TYPE_CHECKING:
    from mesh.models import ModelRegistry

log = logging.getLogger(__name__)

EPS = 1e-4
"""Shares below this are clipped before the PSI's logarithm (an empty bin would make it infinite)."""
PREDICTION = "__prediction__"
KIND_DRIFT = "model_drift"
KIND_CLEARED = "model_drift_cleared"

DRIFT_PSI = Gauge("mesh_model_drift_psi", "PSI of an input feature, served window vs training",
                  ("model", "version", "tenant", "feature"))
DRIFT_KS = Gauge("mesh_model_drift_ks", "Kolmogorov-Smirnov statistic of a numeric input feature vs training",
                 ("model", "version", "tenant", "feature"))
PREDICTION_PSI = Gauge("mesh_model_prediction_drift_psi", "PSI of the prediction, served window vs training",
                       ("model", "version", "tenant"))
DRIFT_ACTIVE = Gauge("mesh_model_drift_active", "1 while a drift alert is active for the tenant",
                     ("model", "tenant"))

Kind = Literal["numeric", "categorical"]
Floats = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ColumnReference:
    """The training distribution of one column."""

    name: str
    kind: Kind
    edges: tuple[float, ...]
    """numeric: interior bin edges (bin i holds edges[i-1] <= v < edges[i]); categorical: the values"""
    expected: tuple[float, ...]
    """share of training rows per bin (numeric: len(edges)+1 bins; categorical: one per value + other)"""
    sample: tuple[float, ...]
    """a random sample of training values (the KS reference)"""

    def shares(self, values: Floats) -> Floats:
        """Share of ``values`` in each of this column's bins."""
        if self.kind == "numeric":
            idx = np.searchsorted(np.asarray(self.edges), values, side="right")
        else:
            lookup = {v: i for i, v in enumerate(self.edges)}
            idx = np.asarray([lookup.get(float(v), len(self.edges)) for v in values], dtype=np.int64)
        counts = np.bincount(idx, minlength=len(self.expected)).astype(np.float64)
        return counts / max(len(values), 1)

    def psi(self, values: Floats) -> float:
        return psi(np.asarray(self.expected), self.shares(values))

    def ks(self, values: Floats) -> float | None:
        if self.kind != "numeric" or not self.sample or len(values) == 0:
            return None
        return float(stats.ks_2samp(np.asarray(self.sample), values).statistic)


def psi(expected: Floats, actual: Floats) -> float:
    """Population stability index of two share vectors (each clipped at :data:`EPS`)."""
    e = np.clip(np.asarray(expected, np.float64), EPS, None)
    a = np.clip(np.asarray(actual, np.float64), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


@dataclass(frozen=True)
class DriftReference:
    """The training reference of a model version: its input columns (in input order) and its prediction."""

    features: tuple[ColumnReference, ...]
    prediction: ColumnReference

    def to_dict(self) -> dict[str, Any]:
        def col(c: ColumnReference) -> dict[str, Any]:
            return {"name": c.name, "kind": c.kind, "edges": list(c.edges), "expected": list(c.expected),
                    "sample": list(c.sample)}
        return {"features": [col(c) for c in self.features], "prediction": col(self.prediction)}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> DriftReference:
        def col(c: Mapping[str, Any]) -> ColumnReference:
            return ColumnReference(c["name"], c["kind"], tuple(c["edges"]), tuple(c["expected"]), tuple(c["sample"]))
        return cls(tuple(col(c) for c in raw["features"]), col(raw["prediction"]))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


def _column(name: str, values: Floats, categorical: bool, bins: int, sample: int, rng: np.random.Generator
            ) -> ColumnReference:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError(f"column {name!r} has no finite training value")
    picked = values if len(values) <= sample else rng.choice(values, sample, replace=False)
    if categorical:
        cats = tuple(float(v) for v in np.unique(values))
        ref = ColumnReference(name, "categorical", cats, (0.0,) * (len(cats) + 1), ())
    else:
        qs = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
        edges = tuple(float(q) for q in np.unique(qs))
        ref = ColumnReference(name, "numeric", edges, (0.0,) * (len(edges) + 1), ())
    return ColumnReference(name, ref.kind, ref.edges, tuple(float(s) for s in ref.shares(values)),
                           tuple(float(v) for v in np.sort(picked)))


def build_reference(x: npt.ArrayLike, names: Sequence[str], predictions: npt.ArrayLike, *,
                    categorical: Sequence[str] = (), max_categories: int = 6, bins: int = 10, sample: int = 500,
                    seed: int = 0) -> DriftReference:
    """The reference of training rows ``x`` (columns ``names``) and the model's predictions on them. A column
    is categorical when named in ``categorical`` or when it takes at most ``max_categories`` values
    (flags, small enums); else numeric on ``bins`` quantile bins."""
    matrix = np.asarray(x, np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(f"x has shape {matrix.shape}, expected (rows, {len(names)})")
    rng = np.random.default_rng(seed)
    forced = set(categorical)
    cols = tuple(_column(n, matrix[:, i], n in forced or len(np.unique(matrix[:, i])) <= max_categories, bins,
                         sample, rng) for i, n in enumerate(names))
    pred = _column(PREDICTION, np.asarray(predictions, np.float64).reshape(-1), False, bins, sample, rng)
    return DriftReference(cols, pred)


@dataclass(frozen=True)
class DriftPolicy:
    """When a tenant's drift alerts (and clears), and how much of its traffic is looked at."""

    threshold: float = 0.25
    """PSI at or above which a drift alert fires (0.1-0.25 is the usual "moderate", > 0.25 "significant")"""
    hysteresis: float = 0.1
    """the alert clears once the drift score falls below ``threshold - hysteresis``"""
    window: int = 1000
    """rows (features of one scored item each) in a tenant's rolling window"""
    min_rows: int = 200
    """rows needed before a tenant's window is evaluated"""
    every: int = 100
    """the window is evaluated every this many new rows"""

    def __post_init__(self) -> None:
        if not 0 <= self.hysteresis < self.threshold:
            raise ValueError(f"need 0 <= hysteresis < threshold, got {self}")
        if not 0 < self.min_rows <= self.window or self.every <= 0:
            raise ValueError(f"need 0 < min_rows <= window and every > 0, got {self}")


@dataclass(frozen=True)
class DriftReport:
    """One evaluation of a tenant's window."""

    model: str
    version: str
    tenant_id: str
    rows: int
    psi: dict[str, float]
    ks: dict[str, float]
    prediction_psi: float

    @property
    def score(self) -> float:
        """The tenant's drift score: the largest PSI over the columns and the prediction."""
        return max([self.prediction_psi, *self.psi.values()])

    def top(self, n: int = 3) -> list[tuple[str, float]]:
        both = {**self.psi, PREDICTION: self.prediction_psi}
        return sorted(both.items(), key=lambda kv: -kv[1])[:n]


def registry_references(registry: ModelRegistry) -> Callable[[str, str], DriftReference | None]:
    """Read a version's reference from the registry (what :class:`DriftMonitor` takes as ``references``)."""
    def read(name: str, version: str) -> DriftReference | None:
        raw = registry.version_json(name, version, DRIFT_REFERENCE_FILE)
        return None if raw is None else DriftReference.from_dict(raw)
    return read


@dataclass
class _Window:
    rows: deque[Floats]
    preds: deque[float]
    since: int = 0
    active: bool = False
    activations: int = 0


@dataclass
class DriftMonitor:
    """Per-tenant rolling windows of one model's inputs and predictions, evaluated against the reference of
    the version that served them (a new version starts new windows). Thread-safe; ``emit`` publishes the
    alerts (the service's publisher: flushed with the batch that caused them)."""

    capability: str
    references: Callable[[str, str], DriftReference | None]
    emit: Callable[[Envelope], None]
    policy: DriftPolicy = field(default_factory=DriftPolicy)
    producer: str = "mlops"
    _windows: dict[tuple[str, str, str], _Window] = field(default_factory=dict)
    _refs: dict[tuple[str, str], DriftReference | None] = field(default_factory=dict)
    _alerting: dict[tuple[str, str], tuple[bool, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reference(self, model: str, version: str) -> DriftReference | None:
        key = (model, version)
        if key not in self._refs:
            try:
                self._refs[key] = self.references(model, version)
            except Exception:  # a registry hiccup must not fail serving: retried at the next evaluation
                log.exception("drift reference of %s v%s could not be read", model, version)
                return None
            if self._refs[key] is None:
                log.warning("%s v%s has no drift reference (trained before mlops): no drift computed", model, version)
        return self._refs[key]

    def observe(self, model: str, version: str, tenant_id: str, x: npt.ArrayLike, predictions: npt.ArrayLike
                ) -> DriftReport | None:
        """Add served rows (``x``: one row per scored item, ``predictions``: their predictions) to the tenant's
        window; returns the evaluation when one was due (its metrics exported, alerts emitted)."""
        rows = np.asarray(x, np.float64).reshape(len(np.asarray(predictions).reshape(-1)), -1)
        preds = np.asarray(predictions, np.float64).reshape(-1)
        with self._lock:
            window = self._windows.get((model, version, tenant_id))
            if window is None:
                window = self._windows[(model, version, tenant_id)] = _Window(
                    deque(maxlen=self.policy.window), deque(maxlen=self.policy.window))
            window.rows.extend(rows)
            window.preds.extend(preds.tolist())
            window.since += len(preds)
            if len(window.preds) < self.policy.min_rows or window.since < self.policy.every:
                return None
            window.since = 0
            x_window, p_window = np.stack(list(window.rows)), np.asarray(window.preds)
        ref = self.reference(model, version)
        if ref is None or x_window.shape[1] != len(ref.features):
            return None
        report = evaluate(ref, x_window, p_window, model, version, tenant_id)
        self._export(report)
        self._alert(report)
        return report

    def _export(self, r: DriftReport) -> None:
        for name, value in r.psi.items():
            DRIFT_PSI.labels(r.model, r.version, r.tenant_id, name).set(value)
        for name, value in r.ks.items():
            DRIFT_KS.labels(r.model, r.version, r.tenant_id, name).set(value)
        PREDICTION_PSI.labels(r.model, r.version, r.tenant_id).set(r.prediction_psi)

    def _alert(self, r: DriftReport) -> None:
        key = (r.model, r.tenant_id)
        with self._lock:
            active, activations = self._alerting.get(key, (False, 0))
            if not active and r.score >= self.policy.threshold:
                active, activations, kind = True, activations + 1, KIND_DRIFT
            elif active and r.score < self.policy.threshold - self.policy.hysteresis:
                active, kind = False, KIND_CLEARED
            else:
                return
            self._alerting[key] = (active, activations)
        DRIFT_ACTIVE.labels(r.model, r.tenant_id).set(1.0 if active else 0.0)
        self.emit(drift_alert(self.capability, r, kind, activations, self.producer))

    def active(self, model: str, tenant_id: str) -> bool:
        return self._alerting.get((model, tenant_id), (False, 0))[0]


def evaluate(ref: DriftReference, x: Floats, predictions: Floats, model: str = "", version: str = "",
             tenant_id: str = "") -> DriftReport:
    """PSI of every column and of the prediction, KS of the numeric columns, of served rows vs ``ref``."""
    psis = {c.name: c.psi(x[:, i]) for i, c in enumerate(ref.features)}
    kss = {c.name: ks for i, c in enumerate(ref.features) if (ks := c.ks(x[:, i])) is not None}
    return DriftReport(model, version, tenant_id, len(predictions), psis, kss, ref.prediction.psi(predictions))


def dedup_key(capability: str, model: str, tenant_id: str) -> str:
    return f"{capability}:{KIND_DRIFT}:{tenant_id}:model:{model}"


def drift_alert(capability: str, r: DriftReport, kind: str, activation: int, producer: str) -> Envelope:
    """The ``ml.alerts`` event of a drift crossing (``model_drift``) or its end (``model_drift_cleared``); its id
    derives from the dedup key, the kind and the activation count only."""
    key = dedup_key(capability, r.model, r.tenant_id)
    raised = kind == KIND_DRIFT
    top = r.top()
    message = (f"{r.model} v{r.version}: inputs of tenant {r.tenant_id} drifted from training (PSI {r.score:.3f}; "
               f"most: {', '.join(f'{n} {v:.3f}' for n, v in top)})" if raised else
               f"{r.model} v{r.version}: drift of tenant {r.tenant_id} back under threshold (PSI {r.score:.3f})")
    alert = events_pb2.Alert(
        alert_id=derived_event_id(key, kind, "", str(activation)), capability=capability, kind=kind,
        severity=events_pb2.SEVERITY_WARNING if raised else events_pb2.SEVERITY_INFO, subject_kind="model",
        subject_id=r.model, message=message, score=r.score, dedup_key=key,
        evidence=[common_pb2.Reason(feature=n, contribution=v, description="PSI") for n, v in top],
        rule=f"psi>={'threshold' if raised else 'threshold-hysteresis'}")
    alert.provenance.model_name = r.model
    alert.provenance.model_version = r.version
    return new_envelope(r.tenant_id, alert, producer=producer, event_id=alert.alert_id)


class DriftSettings(BaseModel):
    """A service's drift settings (``MESH_DRIFT__THRESHOLD`` ...): see :class:`DriftPolicy`."""

    enabled: bool = Field(True, description="measure input and prediction drift per tenant")
    threshold: float = Field(0.25, gt=0, description="PSI at or above which a drift alert fires")
    hysteresis: float = Field(0.1, ge=0, description="the alert clears below threshold - hysteresis")
    window: int = Field(1000, gt=0, description="rows in a tenant's rolling window")
    min_rows: int = Field(200, gt=0, description="rows before a tenant's window is evaluated")
    every: int = Field(100, gt=0, description="evaluate every this many new rows")

    def policy(self) -> DriftPolicy:
        return DriftPolicy(self.threshold, self.hysteresis, self.window, self.min_rows, self.every)
