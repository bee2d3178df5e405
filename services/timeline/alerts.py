"""What the service publishes about a project or milestone, decided from state kept exactly once:
its forecast when it moved (or the deadline risk flipped), and a deadline-risk alert with hysteresis (it
fires once when P(miss) reaches `AlertPolicy.threshold`, and not again until P(miss) has fallen below
``threshold - hysteresis``, which re-arms it).

The per-subject `RiskState` (last published forecast, how many were published, whether an alert is
active and how many fired) lives in the timeline's aggregate store. The published outputs themselves are
applied to it (reducers on ``timeline_prediction`` and ``alert``), so each is recorded once, by its id.
A forecast's id derives from the input event that caused it (the batch's last event on the project), the
model version, the subject and the count of forecasts published for it, so the same batch handled again
after a crash before the record re-publishes the SAME ids (subscribers dedupe them), and a state rebuilt
after a loss never reuses an id for a new forecast. An alert's id derives from its dedup key and the count
of alerts fired for it only: it is the same whatever batch raised it, so a crossing is never alerted under
two ids (after a state loss, a risk alerted before is not alerted again).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from sunday.ml.v1 import common_pb2, events_pb2

from mesh.events import Envelope, derived_event_id, new_envelope
from mesh.features import Ctx, EntityState, Reducers
from services.timeline.state import INPUT_REDUCERS, TimelineState

CAPABILITY = "timeline"
KIND = "deadline_risk"
PRODUCER = "timeline"
MIN_CHANGE_HOURS = 1.0
"""A project or milestone forecast is republished when its p50 moves by more than this ..."""
MIN_CHANGE_P_MISS = 0.02
"""... or its deadline-miss probability by more than this (or the alert state flips)."""
_SUBJECT = {events_pb2.ENTITY_KIND_PROJECT: "project", events_pb2.ENTITY_KIND_MILESTONE: "milestone"}


@dataclass(frozen=True)
class AlertPolicy:
    """When a deadline-risk alert fires."""

    threshold: float = 0.5
    """P(miss deadline) at or above which an alert fires"""
    hysteresis: float = 0.15
    """how far below the threshold P(miss) must fall before the alert may fire again"""
    critical: float = 0.85
    """P(miss) at or above which the alert is CRITICAL rather than WARNING"""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0 or not 0.0 <= self.hysteresis < self.threshold:
            raise ValueError(f"need 0 < threshold <= 1 and 0 <= hysteresis < threshold, got {self}")

    def rearms(self, p_miss: float) -> bool:
        return p_miss < self.threshold - self.hysteresis


DEFAULT_POLICY = AlertPolicy()


class RiskState(EntityState):
    """One project or milestone (entity id ``kind:id``): what was last published about it."""

    kind: ClassVar[str] = "timeline_risk"

    published: int = 0
    """forecasts published so far (the next one's id derives from this count)"""
    p50: datetime | None = None
    """completion p50 of the last published forecast"""
    p_miss: float = 0.0
    active: bool = False
    """a deadline-risk alert fired and P(miss) has not fallen below threshold - hysteresis since"""
    activations: int = 0
    """alerts fired so far (the next one's id derives from this count)"""


def dedup_key(tenant_id: str, subject_kind: str, subject_id: str) -> str:
    return f"{CAPABILITY}:{KIND}:{tenant_id}:{subject_kind}:{subject_id}"


def subject_of(p: events_pb2.TimelinePrediction) -> str:
    return f"{_SUBJECT[p.entity_kind]}:{p.entity_id}"


def output_reducers(policy: AlertPolicy) -> Reducers:
    """The timeline table plus the records of its own outputs (one `RiskState` per subject)."""

    def published(ctx: Ctx, env: Envelope) -> None:
        p = env.timeline_prediction
        if p.entity_kind not in _SUBJECT:
            return  # task predictions are not tracked
        state = ctx.txn.get(RiskState, ctx.tenant, subject_of(p))
        state.published += 1  # once per output id: the store skips an id it has applied
        if state.newer("last", ctx.stamp):
            state.p50, state.p_miss = p.completion_p50.ToDatetime(tzinfo=ctx.at.tzinfo), p.deadline_miss_probability
            if policy.rearms(p.deadline_miss_probability):
                state.active = False
        state.touch(ctx.at)
        ctx.txn.put(state)

    def alerted(ctx: Ctx, env: Envelope) -> None:
        a = env.alert
        state = ctx.txn.get(RiskState, ctx.tenant, f"{a.subject_kind}:{a.subject_id}")
        state.activations += 1
        state.active = True
        state.touch(ctx.at)
        ctx.txn.put(state)

    table = {**INPUT_REDUCERS.table, "timeline_prediction": published, "alert": alerted}
    return Reducers("timeline", table, INPUT_REDUCERS.prefetch)


class RiskTracker:
    """Turns a batch's project and milestone forecasts into the envelopes to publish (`outputs`), and
    records them once published (`record`)."""

    def __init__(self, state: TimelineState, policy: AlertPolicy = DEFAULT_POLICY) -> None:
        self._state = state
        self.policy = policy

    def outputs(self, tenant_id: str, predictions: Sequence[tuple[events_pb2.TimelinePrediction, str]],
                at: datetime) -> list[Envelope]:
        """Forecasts that moved (or flip the alert state) and the alerts that fire, with derived ids;
        ``predictions``: (forecast, id of the input event that caused it)."""
        subjects = [subject_of(p) for p, _ in predictions]
        known = self._state.store.load_many(RiskState, tenant_id, subjects)
        out: list[Envelope] = []
        for (p, cause), subject, state in zip(predictions, subjects, known, strict=True):
            last = state or RiskState(tenant_id=tenant_id, entity_id=subject)
            fires = p.deadline_miss_probability >= self.policy.threshold and not last.active
            rearms = last.active and self.policy.rearms(p.deadline_miss_probability)
            if fires or rearms or _moved(last, p):
                version = f"{p.provenance.model_name}:{p.provenance.model_version}"
                out.append(new_envelope(tenant_id, p, producer=PRODUCER, occurred_at=at, event_id=derived_event_id(
                    cause, "timeline_prediction", version, f"{subject}#{last.published}")))
            if fires:
                alert = self.alert(tenant_id, p, last.activations)
                out.append(new_envelope(tenant_id, alert, producer=PRODUCER, occurred_at=at, event_id=alert.alert_id))
        return out

    def record(self, outputs: Sequence[Envelope]) -> None:
        """Apply the published outputs to the risk states (once each, by id)."""
        self._state.apply(outputs, require_built=True)

    def alert(self, tenant_id: str, p: events_pb2.TimelinePrediction, activation: int) -> events_pb2.Alert:
        """The alert of ``activation``-th crossing of the threshold by the subject of ``p``."""
        kind, p_miss = _SUBJECT[p.entity_kind], p.deadline_miss_probability
        key = dedup_key(tenant_id, kind, p.entity_id)
        severity = events_pb2.SEVERITY_CRITICAL if p_miss >= self.policy.critical else events_pb2.SEVERITY_WARNING
        return events_pb2.Alert(
            alert_id=derived_event_id(key, "alert", "", str(activation)), capability=CAPABILITY, kind=KIND,
            severity=severity, subject_kind=kind, subject_id=p.entity_id, score=p_miss, dedup_key=key,
            message=f"{kind} {p.entity_id} will miss its deadline with probability {p_miss:.0%}",
            provenance=common_pb2.Provenance() if not p.HasField("provenance") else p.provenance)


def _moved(last: RiskState, p: events_pb2.TimelinePrediction) -> bool:
    if last.p50 is None:
        return True
    p50 = p.completion_p50.ToDatetime(tzinfo=last.p50.tzinfo)
    return (abs((p50 - last.p50).total_seconds()) > MIN_CHANGE_HOURS * 3600.0
            or abs(p.deadline_miss_probability - last.p_miss) > MIN_CHANGE_P_MISS)
