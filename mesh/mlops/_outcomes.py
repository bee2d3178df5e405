"""Live model quality on delayed outcomes: predictions joined to the events that later tell the truth.

A service declares, next to itself, an :class:`OutcomeSpec`: which of its prediction events to keep, by
which key, what of each to keep; which later events are the truth for that key; and how one (prediction,
truth) pair scores. :class:`OutcomeJoiner` is a batch handler (its own consumer group on the prediction
topic and the truth topics) that keeps, per tenant:

- per join key (``JoinState``): the earliest prediction of each model version, the truth (the earliest
  truth event by default) and the score currently counted for each version;
- per model version (``LiveMetricState``): how many outcomes were scored and the sum of each metric.

Both are applied through the mesh's exactly-once store (``mesh.features.RedisAggregates`` with the
joiner's own :class:`~mesh.features.Reducers` and namespace): each event changes them once, atomically with
its applied-mark, so the join survives restarts and redeliveries, and outcomes may arrive weeks after their
prediction (the state stays in Redis; the applied-marks expire after ``seen_ttl_s``). The updates do not
depend on arrival order: whichever of prediction and truth comes second scores the pair, and a truth or
prediction replaced by an earlier one swaps its score (the old contribution is taken out of the sums).

After each batch the live metric (mean per version) is exported as Prometheus gauges
(``mesh_model_live_metric``, ``mesh_model_live_outcomes``) and, once ``min_outcomes`` are scored, a
``model_degraded`` alert is published on ``ml.alerts`` when the headline metric is past ``threshold``, and a
``model_degraded_cleared`` once when it is back by ``hysteresis`` (the alerts are recorded in the same store
by their derived ids: published once per crossing whatever the redeliveries).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client import Gauge
from pydantic import Field
from sunday.ml.v1 import events_pb2

from mesh.events import Envelope, derived_event_id, new_envelope
from mesh.features import AggregateStore, Ctx, EntityState, Reducers, Stamp

log = logging.getLogger(__name__)

KIND_DEGRADED = "model_degraded"
KIND_RECOVERED = "model_degraded_cleared"
PRODUCER = "mlops"

LIVE_METRIC = Gauge("mesh_model_live_metric", "Mean of a live metric over the outcomes scored so far",
                    ("capability", "model", "version", "tenant", "metric"))
LIVE_OUTCOMES = Gauge("mesh_model_live_outcomes", "Predictions joined to their outcome so far",
                      ("capability", "model", "version", "tenant"))
DEGRADED = Gauge("mesh_model_degraded", "1 while the live metric of a version is past its threshold",
                 ("capability", "model", "version", "tenant"))

Record = dict[str, Any]
Scores = dict[str, float]


@dataclass(frozen=True)
class OutcomeSpec:
    """What a service declares about the truth of its predictions (see ``services/<svc>/outcomes.py``)."""

    capability: str
    prediction_type: str
    """the prediction event type (``assignment_prediction``)"""
    prediction_key: Callable[[Envelope], str | None]
    """the join key of a prediction (None: not joined, e.g. a project forecast)"""
    keep: Callable[[Envelope], Record]
    """what of a prediction to keep (JSON-able, small: the state holds it until its outcome)"""
    outcome_types: tuple[str, ...]
    truth: Callable[[Envelope], tuple[str, Record] | None]
    """the join key and truth of an outcome event (None: this event tells nothing)"""
    score: Callable[[Record, Record], Scores]
    """(kept prediction, truth) -> metric values of the pair"""
    metric: str
    """the headline metric (a key of ``score``'s result) that degradation is judged on"""
    higher_is_better: bool
    threshold: float
    """degraded when the headline mean is below (higher is better) / above it"""
    hysteresis: float = 0.0
    """recovered once it is back past ``threshold`` by this much"""
    min_outcomes: int = 30
    """outcomes needed before a version's live metric can alert"""

    def degraded(self, value: float) -> bool:
        return value < self.threshold if self.higher_is_better else value > self.threshold

    def recovered(self, value: float) -> bool:
        if self.higher_is_better:
            return value >= self.threshold + self.hysteresis
        return value <= self.threshold - self.hysteresis


class JoinState(EntityState):
    """One join key of one tenant: the predictions of each model version, the truth, what is counted."""

    kind: ClassVar[str] = "mlops_join"

    predictions: dict[str, Record] = Field(default_factory=dict)
    """``model:version`` -> kept prediction (the earliest: ``_stamp`` holds its event stamp)"""
    truth: Record | None = None
    truth_stamp: Stamp | None = None
    counted: dict[str, Scores] = Field(default_factory=dict)
    """``model:version`` -> the scores of this key counted in that version's live metric"""


class LiveMetricState(EntityState):
    """One model version (entity id ``model:version``) in one tenant: outcomes scored and metric sums."""

    kind: ClassVar[str] = "mlops_live"

    outcomes: int = 0
    sums: dict[str, float] = Field(default_factory=dict)
    degraded: bool = False
    activations: int = 0
    """degradation alerts fired so far (the next one's id derives from this count)"""

    def mean(self, metric: str) -> float | None:
        return None if self.outcomes == 0 or metric not in self.sums else self.sums[metric] / self.outcomes


def model_version(env: Envelope) -> str:
    """``model:version`` of a prediction event (from its payload's provenance)."""
    prov = getattr(env, env.type).provenance
    return f"{prov.model_name}:{prov.model_version}"


def _recount(ctx: Ctx, join: JoinState, spec: OutcomeSpec, version: str) -> None:
    kept = join.predictions.get(version)
    new = spec.score(_plain(kept), join.truth) if kept is not None and join.truth is not None else None
    old = join.counted.get(version)
    if new == old:
        return
    live = ctx.txn.get(LiveMetricState, ctx.tenant, version)
    if old is not None:
        live.outcomes -= 1
        for k, v in old.items():
            live.sums[k] = live.sums.get(k, 0.0) - v
    if new is not None:
        live.outcomes += 1
        for k, v in new.items():
            live.sums[k] = live.sums.get(k, 0.0) + float(v)
        join.counted[version] = {k: float(v) for k, v in new.items()}
    else:
        join.counted.pop(version, None)
    live.touch(ctx.at)
    ctx.txn.put(live)


def _plain(kept: Record) -> Record:
    return {k: v for k, v in kept.items() if k != "_stamp"}


def reducers(spec: OutcomeSpec) -> Reducers:
    """The joiner's reducer table for ``spec``: predictions, truths, and its own degradation alerts."""

    def on_prediction(ctx: Ctx, env: Envelope) -> None:
        key = spec.prediction_key(env)
        if key is None:
            return
        join = ctx.txn.get(JoinState, ctx.tenant, key)
        version = model_version(env)
        kept = join.predictions.get(version)
        if kept is not None and tuple(kept["_stamp"]) <= ctx.stamp:
            return  # the earliest prediction of a version is the one judged
        join.predictions[version] = {**spec.keep(env), "_stamp": list(ctx.stamp)}
        _recount(ctx, join, spec, version)
        join.touch(ctx.at)
        ctx.txn.put(join)

    def on_outcome(ctx: Ctx, env: Envelope) -> None:
        found = spec.truth(env)
        if found is None:
            return
        key, truth = found
        join = ctx.txn.get(JoinState, ctx.tenant, key)
        if join.truth_stamp is not None and tuple(join.truth_stamp) <= ctx.stamp:
            return  # the earliest truth holds
        join.truth, join.truth_stamp = truth, ctx.stamp
        for version in join.predictions:
            _recount(ctx, join, spec, version)
        join.touch(ctx.at)
        ctx.txn.put(join)

    def on_alert(ctx: Ctx, env: Envelope) -> None:
        a = env.alert
        if a.capability != spec.capability or a.kind not in (KIND_DEGRADED, KIND_RECOVERED):
            return
        live = ctx.txn.get(LiveMetricState, ctx.tenant, f"{a.provenance.model_name}:{a.provenance.model_version}")
        live.degraded = a.kind == KIND_DEGRADED
        if live.degraded:
            live.activations += 1
        ctx.txn.put(live)

    table: dict[str, Callable[[Ctx, Envelope], None]] = {spec.prediction_type: on_prediction, "alert": on_alert}
    table.update({t: on_outcome for t in spec.outcome_types})
    return Reducers(f"mlops-{spec.capability}", table)


def degradation_alert(spec: OutcomeSpec, tenant_id: str, live: LiveMetricState, value: float, raised: bool
                      ) -> Envelope:
    """The ``ml.alerts`` event of a version's live metric crossing its threshold (or recovering)."""
    model, _, version = live.entity_id.rpartition(":")
    key = f"{spec.capability}:{KIND_DEGRADED}:{tenant_id}:model:{live.entity_id}"
    kind = KIND_DEGRADED if raised else KIND_RECOVERED
    activation = live.activations + 1 if raised else live.activations
    where = "below" if spec.higher_is_better else "above"
    message = (f"{model} v{version}: live {spec.metric} {value:.4g} over {live.outcomes} outcomes in tenant "
               f"{tenant_id} is {where} {spec.threshold:g}" if raised else
               f"{model} v{version}: live {spec.metric} {value:.4g} recovered in tenant {tenant_id}")
    alert = events_pb2.Alert(alert_id=derived_event_id(key, kind, "", str(activation)), capability=spec.capability,
                             kind=kind, severity=events_pb2.SEVERITY_WARNING if raised else events_pb2.SEVERITY_INFO,
                             subject_kind="model", subject_id=model, message=message, score=value, dedup_key=key,
                             rule=f"{spec.metric} {'<' if spec.higher_is_better else '>'} {spec.threshold:g}")
    alert.provenance.model_name = model
    alert.provenance.model_version = version
    return new_envelope(tenant_id, alert, producer=PRODUCER, event_id=alert.alert_id)


class Emitter:
    """Where the joiner's alerts go: ``publish`` then ``flush`` (a :class:`mesh.bus.Publisher`)."""

    def __init__(self, publish: Callable[[Envelope], None], flush: Callable[[], object]) -> None:
        self.publish = publish
        self.flush = flush


class OutcomeJoiner:
    """The batch handler of a service's outcome consumer: join, export, alert (see the module doc)."""

    def __init__(self, spec: OutcomeSpec, store: AggregateStore, emitter: Emitter) -> None:
        if store.reducers.table.keys() != reducers(spec).table.keys():
            raise ValueError("the joiner's store must be built with mesh.mlops.reducers(spec)")
        self.spec = spec
        self._store = store
        self._emitter = emitter

    def __call__(self, events: Sequence[Envelope]) -> None:
        applied = self._store.apply(events)
        alerts = []
        for state in applied.changed:
            if isinstance(state, LiveMetricState):
                alert = self._observe(state)
                if alert is not None:
                    alerts.append(alert)
        if alerts:
            for env in alerts:
                self._emitter.publish(env)
            self._emitter.flush()  # delivered before recorded: a crash in between re-publishes the same ids
            self._store.apply(alerts)

    def _observe(self, live: LiveMetricState) -> Envelope | None:
        spec, tenant = self.spec, live.tenant_id
        model, _, version = live.entity_id.rpartition(":")
        LIVE_OUTCOMES.labels(spec.capability, model, version, tenant).set(live.outcomes)
        for metric in live.sums:
            value = live.mean(metric)
            if value is not None:
                LIVE_METRIC.labels(spec.capability, model, version, tenant, metric).set(value)
        headline = live.mean(spec.metric)
        if headline is None or live.outcomes < spec.min_outcomes:
            return None
        if not live.degraded and spec.degraded(headline):
            DEGRADED.labels(spec.capability, model, version, tenant).set(1)
            return degradation_alert(spec, tenant, live, headline, raised=True)
        if live.degraded and spec.recovered(headline):
            DEGRADED.labels(spec.capability, model, version, tenant).set(0)
            return degradation_alert(spec, tenant, live, headline, raised=False)
        return None

    def live(self, tenant_id: str, version: str) -> LiveMetricState | None:
        """The live metric state of ``model:version`` in a tenant (for reports and the demo)."""
        return self._store.load(LiveMetricState, tenant_id, version)


def live_table(states: Mapping[str, LiveMetricState], metrics: Sequence[str]) -> str:
    """A small table of versions' live metrics (``model:version`` -> state)."""
    lines = [f"{'version':<36}{'outcomes':>9}" + "".join(f"{m:>12}" for m in metrics)]
    for name, st in states.items():
        cells = "".join(f"{(st.mean(m) if st.mean(m) is not None else float('nan')):>12.4f}" for m in metrics)
        lines.append(f"{name:<36}{st.outcomes:>9}{cells}")
    return "\n".join(lines)
