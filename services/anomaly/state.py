"""The anomaly service's state, kept by a mesh reducer table in a mesh aggregate store (Redis in the service):
per user, the open hour's window, the user's history, the rules engine's memory (cooldowns, recent actions,
open incident); per incident, its record; per input event that raised alerts, the alerts (an outbox).

Exactly once: the store applies each event once, atomically with its applied-mark (``mesh.features``), so a
window is never counted twice and a cooldown never forgotten under redelivery. The alerts an event raised
are written in the same transaction (``OutboxState``, keyed by the event): the handler publishes the outbox
entries of every event of a batch, fresh or redelivered, under their deterministic ids
(``new_envelope(caused_by=...)``), so a crash between commit and publish loses no alert and duplicates none.

Per user the same steps as the offline path (`features.user_hours` + `detector.alerts_for`): an hour closes
when the user's first event of a later hour arrives (Kafka keeps a user's events in order: they are keyed by
tenant:user), its vector is scored with the champion ensemble and given to the tenant's rules with the
user's action events. An event older than the open hour (late) still feeds the static rules; its hour, already
scored, is not reopened (counted in ``late_events``).

The reducers are order-dependent by nature (windows close in event order): the service applies them in
partition order, one consumer per partition.
"""

from __future__ import annotations

import base64
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from mesh.errors import Unavailable
from mesh.events import Envelope, InvalidEvent, decode, encode
from mesh.features import Ctx, EntityState, Reducers
from services.anomaly.detector import hour_signal
from services.anomaly.ensemble import Scorer
from services.anomaly.features import ACTIONS, FEATURES, OpenHour, UserHistory, close_hour
from services.anomaly.pipeline import SEQ_LEN
from services.anomaly.rules import EngineState, Incident, RuleEngine, RuleSet, Signal

HISTORY_CAP = 200
"""Distinct IPs / devices remembered per user (the oldest are forgotten past this)."""


class UserState(EntityState):
    """One user of a tenant, as the detector and the rules need them."""

    kind: ClassVar[str] = "anomaly_user"

    hour: datetime | None = None
    """Start of the open (not yet scored) hour."""
    counts: list[float] = Field(default_factory=lambda: [0.0] * len(ACTIONS))
    items: list[float] = Field(default_factory=lambda: [0.0] * len(ACTIONS))
    ips: list[str] = Field(default_factory=list)
    devices: list[str] = Field(default_factory=list)
    last_event_id: str = ""
    seen_ips: list[str] = Field(default_factory=list)
    seen_devices: list[str] = Field(default_factory=list)
    hours_of_day: list[float] = Field(default_factory=lambda: [0.0] * 24)
    recent: list[list[float]] = Field(default_factory=list)
    """Vectors of the last SEQ_LEN - 1 closed hours (the LSTM's context)."""
    last_fired: dict[str, datetime] = Field(default_factory=dict)
    recent_actions: dict[str, list[datetime]] = Field(default_factory=dict)
    incident_id: str = ""
    late_events: int = 0
    hours_scored: int = 0


class IncidentState(EntityState):
    """One incident (entity_id = incident id)."""

    kind: ClassVar[str] = "anomaly_incident"

    user_id: str = ""
    opened_at: datetime | None = None
    last_alert_at: datetime | None = None
    severity: str = "info"
    rules: list[str] = Field(default_factory=list)
    alerts: int = 0
    suppressed: int = 0
    status: str = "open"

    def incident(self) -> Incident:
        assert self.opened_at is not None and self.last_alert_at is not None
        return Incident(self.entity_id, self.tenant_id, self.user_id, self.opened_at, self.last_alert_at,
                        self.severity, set(self.rules), self.alerts, self.suppressed, self.status)


class OutboxState(EntityState):
    """The alerts one input event raised (entity_id = that event's id), as serialized envelopes."""

    kind: ClassVar[str] = "anomaly_outbox"

    alerts: list[str] = Field(default_factory=list)

    def envelopes(self) -> list[Envelope]:
        return [decode(base64.b64decode(a)) for a in self.alerts]


class TenantClock(EntityState):
    """The newest event time seen of a tenant (auto-resolve of quiet incidents is judged against it)."""

    kind: ClassVar[str] = "anomaly_tenant"


@dataclass
class Scored:
    tenant_id: str
    user_id: str
    margin: float


@dataclass
class DetectorContext:
    """What the reducers read besides the state, set by the handler before each batch."""

    scorer: Callable[[], Scorer]
    """The champion (raises Unavailable while there is none: the bus retries and holds the batch)."""
    rules_of: Callable[[str], RuleSet]
    scored: dict[str, Scored] = field(default_factory=dict)
    """Hours scored by the batch in flight, by cause event id (for metrics; a retried transaction overwrites)."""


def check(env: Envelope) -> None:
    """Reject what the envelope validation cannot see: activity that would poison the windows."""
    if env.WhichOneof("payload") != "user_activity":
        return
    act = env.user_activity
    if not act.user_id:
        raise InvalidEvent("user_activity.user_id is empty")
    if not act.action:
        raise InvalidEvent("user_activity.action is empty")


def _engine_state(u: UserState, incident: IncidentState | None) -> EngineState:
    key = (u.tenant_id, u.entity_id)
    st = EngineState(
        last_fired={(*key, rule): at for rule, at in u.last_fired.items()},
        recent_actions={(*key, rule): deque(times) for rule, times in u.recent_actions.items()})
    if incident is not None and incident.opened_at is not None:
        inc = incident.incident()
        st.incidents[inc.incident_id] = inc
        if inc.status != "resolved":
            st.open_by_entity[key] = inc.incident_id
    return st


def _save_engine(ctx: Ctx, u: UserState, st: EngineState) -> None:
    u.last_fired = {rule: at for (_, _, rule), at in st.last_fired.items()}
    u.recent_actions = {rule: list(q) for (_, _, rule), q in st.recent_actions.items()}
    u.incident_id = st.open_by_entity.get((u.tenant_id, u.entity_id), "")
    for inc in st.incidents.values():
        rec = ctx.txn.get(IncidentState, inc.tenant_id, inc.incident_id)
        rec.user_id, rec.opened_at, rec.last_alert_at = inc.entity_id, inc.opened_at, inc.last_alert_at
        rec.severity, rec.rules, rec.status = inc.severity, sorted(inc.rules), inc.status
        rec.alerts, rec.suppressed = inc.alerts, inc.suppressed
        rec.touch(inc.last_alert_at)
        ctx.txn.put(rec)


def _score_hour(dctx: DetectorContext, u: UserState) -> Signal:
    """Close the user's open hour: its vector (features.close_hour, as offline), scored by the champion."""
    assert u.hour is not None
    w = OpenHour(u.hour, np.array(u.counts, dtype=np.float64), np.array(u.items, dtype=np.float64),
              set(u.ips), set(u.devices), [u.last_event_id])
    hist = UserHistory(set(u.seen_ips), set(u.seen_devices), np.array(u.hours_of_day, dtype=np.float64))
    row = close_hour(u.tenant_id, u.entity_id, w, hist)
    u.seen_ips = sorted(hist.ips)[-HISTORY_CAP:]
    u.seen_devices = sorted(hist.devices)[-HISTORY_CAP:]
    u.hours_of_day = [float(x) for x in hist.hours_of_day]
    window = [*u.recent[-(SEQ_LEN - 1):], [float(x) for x in row.vector]]
    seq = np.zeros((1, SEQ_LEN, len(FEATURES)))
    seq[0, SEQ_LEN - len(window):] = np.array(window)
    u.recent = window[-(SEQ_LEN - 1):]
    model = dctx.scorer()
    z_if, z_ae = model.components([u.tenant_id], row.vector[None, :], seq)
    w_if = model.weight_iforest
    margin = float(w_if * z_if[0] + (1 - w_if) * z_ae[0] - model.threshold)
    if not math.isfinite(margin):
        margin = 0.0
    u.hours_scored += 1
    dctx.scored[u.last_event_id] = Scored(u.tenant_id, u.entity_id, margin)
    return hour_signal(row, margin, float(z_if[0]), float(z_ae[0]))


def _open_hour(u: UserState, hour: datetime) -> None:
    u.hour = hour
    u.counts, u.items = [0.0] * len(ACTIONS), [0.0] * len(ACTIONS)
    u.ips, u.devices, u.last_event_id = [], [], ""


def _activity(dctx: DetectorContext) -> Callable[[Ctx, Envelope], None]:
    def reduce(ctx: Ctx, env: Envelope) -> None:
        act = env.user_activity
        u = ctx.txn.get(UserState, ctx.tenant, act.user_id)
        hour = ctx.at.replace(minute=0, second=0, microsecond=0)
        signals: list[Signal] = []
        if u.hour is not None and hour > u.hour:
            signals.append(_score_hour(dctx, u))
        if u.hour is None or hour > u.hour:
            _open_hour(u, hour)
        if hour == u.hour:
            i = ACTIONS.index(act.action) if act.action in ACTIONS else len(ACTIONS) - 1
            u.counts[i] += 1
            u.items[i] += max(act.count, 1)
            u.ips = sorted({*u.ips, act.ip})
            u.devices = sorted({*u.devices, act.device})
            u.last_event_id = env.event_id
        else:
            u.late_events += 1
        signals.append(Signal(ctx.tenant, act.user_id, ctx.at, env.event_id, action=act.action))
        rules = dctx.rules_of(ctx.tenant)
        incident = ctx.txn.get(IncidentState, ctx.tenant, u.incident_id) if u.incident_id else None
        try:  # static rules alert without a model too; alerts name the model version whenever there is one
            model_version = dctx.scorer().version
        except Unavailable:
            model_version = ""
        engine = RuleEngine(rules, model_version=model_version, state=_engine_state(u, incident))
        alerts: list[Envelope] = []
        for s in signals:
            engine.resolve_quiet(s.at)
            alerts += engine.observe(s)
        _save_engine(ctx, u, engine.state)
        u.touch(ctx.at)
        ctx.txn.put(u)
        clock = ctx.txn.get(TenantClock, ctx.tenant, "")
        if clock.as_of is None or ctx.at > clock.as_of:
            clock.touch(ctx.at)
            ctx.txn.put(clock)
        if alerts:
            box = ctx.txn.get(OutboxState, ctx.tenant, env.event_id)
            box.alerts = [base64.b64encode(encode(a)).decode() for a in alerts]
            box.touch(ctx.at)
            ctx.txn.put(box)

    return reduce


def anomaly_reducers(dctx: DetectorContext) -> Reducers:
    """The service's reducer table (one event type: user_activity), reading `dctx` for model and rules."""
    return Reducers("anomaly", {"user_activity": _activity(dctx)})


def is_quiet(inc: IncidentState, now: datetime | None, rules: RuleSet) -> bool:
    """Whether an unresolved incident's signal has ended as of the tenant's newest event (auto-resolve)."""
    return (now is not None and inc.last_alert_at is not None
            and now - inc.last_alert_at >= timedelta(minutes=rules.resolve_after_minutes))


def outbox_ids(events: Sequence[Envelope]) -> dict[str, list[str]]:
    """Event ids per tenant of a batch's activity events (where alerts may wait in the outbox), in order."""
    out: dict[str, list[str]] = {}
    for env in events:
        if env.WhichOneof("payload") == "user_activity":
            out.setdefault(env.tenant_id, []).append(env.event_id)
    return out


class StoreIncidents:
    """The incidents of the service's store, for the gRPC servicer (list, acknowledge, resolve).

    An unresolved incident whose signal ended (no alert for ``resolve_after_minutes`` of the tenant's rules,
    judged against the tenant's newest event) reads as resolved: the engine resolves it for good at the user's
    next signal."""

    def __init__(self, store: Any, rules_of: Callable[[str], RuleSet]) -> None:
        self._store = store
        self._rules_of = rules_of

    def list(self, tenant_id: str) -> list[Incident]:
        prefix = f"{IncidentState.kind}:{tenant_id}:"
        ids = [k[len(prefix):] for k in self._store.keys(IncidentState.kind) if k.startswith(prefix)]
        clock = self._store.load(TenantClock, tenant_id, "")
        rules = self._rules_of(tenant_id)
        out = []
        for rec in self._store.load_many(IncidentState, tenant_id, ids):
            if rec is None or rec.opened_at is None:
                continue
            inc = rec.incident()
            if inc.status != "resolved" and is_quiet(rec, None if clock is None else clock.as_of, rules):
                inc.status = "resolved"
            out.append(inc)
        return out

    def set_status(self, tenant_id: str, incident_id: str, status: str) -> Incident | None:
        def change(rec: IncidentState) -> None:
            rec.status = status

        rec = self._store.update(IncidentState, tenant_id, incident_id, change)
        return None if rec is None or rec.opened_at is None else rec.incident()
