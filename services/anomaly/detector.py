"""Events -> alerts: hourly vectors scored by the ensemble, activity events, both through the rules engine.

`alerts_for` is the whole offline path of the service (the bench, the demo and the end-to-end check use it):
every user-hour becomes a score `Signal` (its cause: the hour's last event, so the alert id is derived from
it), every activity event an action `Signal` for the static rules; the engine dedups and groups them into
incidents. The score given to the rules is the ensemble score minus the chosen threshold, so the default
rule's `info: 0.0` means "the ensemble's validation-chosen threshold".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta

import numpy as np

from mesh.events import Envelope, occurred_at
from services.anomaly.ensemble import FloatArray, Scorer
from services.anomaly.features import FEATURES, UserHour
from services.anomaly.pipeline import Dataset
from services.anomaly.rules import RuleEngine, RuleSet, Signal, load_rules

DEFAULT_RULES = """
cooldown_minutes: 60
incident_gap_minutes: 180
resolve_after_minutes: 360
rules:
  - {name: unusual_activity, kind: score, thresholds: {info: 0.0, warning: 20.0, critical: 80.0}}
  - {name: bulk_delete_burst, kind: static, action: bulk_delete, min_events: 10, within_minutes: 30,
     severity: critical}
"""


def default_rules() -> RuleSet:
    return load_rules(DEFAULT_RULES)


def hour_signal(r: UserHour, margin: float, z_if: float, z_ae: float) -> Signal:
    """The score signal of a closed user-hour: raised when the hour ends, caused by its last event; the
    evidence names both models' z and the feature with the largest value, the window is the 1 h tumbling one."""
    top = int(np.argmax(r.vector))
    evidence = (("isolation_forest_z", float(z_if)), ("lstm_autoencoder_z", float(z_ae)),
                (FEATURES[top], float(r.vector[top])))
    hour_start = int(r.hour.timestamp())
    return Signal(r.tenant_id, r.user_id, r.hour + timedelta(hours=1), r.event_ids[-1], score=float(margin),
                  evidence=evidence, window_keys=(f"{r.tenant_id}|user|{r.user_id}|tumbling_1h|{hour_start}",))


def _signals(ds: Dataset, margin: FloatArray, z_if: FloatArray, z_ae: FloatArray) -> list[Signal]:
    return [hour_signal(r, float(m), float(a), float(b)) for r, m, a, b in zip(ds.rows, margin, z_if, z_ae,
                                                                               strict=True)]


def alerts_for(events: Sequence[Envelope] | Iterable[Envelope], ensemble: Scorer,
               rules: RuleSet | None = None) -> tuple[list[Envelope], RuleEngine]:
    """Alert envelopes (ml.alerts) for time-ordered events, and the engine (its incidents) after them."""
    events = list(events)
    ds = Dataset.from_events(events)
    engine = RuleEngine(rules or default_rules(), model_version=ensemble.version)
    if not ds.rows:
        return [], engine
    z_if, z_ae = ensemble.components(ds.tenants, ds.vectors, ds.seqs)
    w = ensemble.weight_iforest
    margin = w * z_if + (1 - w) * z_ae - ensemble.threshold
    signals = _signals(ds, margin, z_if, z_ae)
    signals += [Signal(env.tenant_id, env.user_activity.user_id, occurred_at(env), env.event_id,
                       action=env.user_activity.action)
                for env in events if env.WhichOneof("payload") == "user_activity"]
    signals.sort(key=lambda s: s.at)
    alerts: list[Envelope] = []
    for s in signals:
        alerts += engine.observe(s)
        engine.resolve_quiet(s.at)
    return alerts, engine
