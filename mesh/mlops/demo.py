"""Demo functions for ``make demo`` (the lead's scripts/demo.py calls them): the real mesh.mlops code paths on
small synthetic data, printing what an operator would see.

- :func:`drift_demo`: two tenants served by one model version; from ``drift_from`` on, tenant ``globex``'s task
  mix shifts (one input's distribution moves). Prints the PSI of each tenant's window as it is evaluated and
  the ``ml.alerts`` events the monitor emits: one ``model_drift`` for globex, none for acme. Returns the alerts.
- :func:`shadow_demo`: a champion and a challenger served in shadow on the same tasks; the truths arrive
  later; the outcome joiner scores both. Prints the live MRR of each version and the shadow evidence (paired
  improvement, 95% bootstrap CI, pass/fail for promotion). Returns the evidence.

On the running stack the same views come from the services themselves: ``python -m mesh.mlops live assignment
--tenant T --model assignment-ranker``, ``python -m mesh.mlops compare assignment --model assignment-ranker``
(with ``MESH_SHADOW_ALIAS=challenger`` on the assignment service), and the ``mesh_model_drift_*`` /
``mesh_model_live_*`` gauges on each service's metrics port.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
from sunday.ml.v1 import events_pb2

from mesh.events import Envelope, new_envelope
from mesh.features import InMemoryAggregates
from mesh.mlops._drift import DriftMonitor, DriftPolicy, build_reference
from mesh.mlops._outcomes import Emitter, OutcomeJoiner, live_table, reducers
from mesh.mlops._shadow import ShadowEvidence, paired_scores, shadow_evidence

_NAMES = ("workload_hours", "skill_match", "tasks_done_30d")


def drift_demo(batches: int = 12, drift_from: int = 4, rows: int = 100, seed: int = 0,
               out: Callable[[str], None] = print) -> list[Envelope]:
    """Serve ``batches`` batches of ``rows`` scored rows per tenant; globex drifts from batch ``drift_from``."""
    rng = np.random.default_rng(seed)

    def rows_of(n: int, drifted: bool) -> np.ndarray:
        workload = rng.gamma(2.0, 8.0 if not drifted else 20.0, n)  # the drifted tenant's people are overloaded
        return np.column_stack([workload, rng.uniform(0, 1, n), rng.poisson(5, n)])

    train = rows_of(5000, False)
    reference = build_reference(train, _NAMES, train @ np.array([-0.02, 1.0, 0.05]))
    alerts: list[Envelope] = []
    monitor = DriftMonitor("assignment", lambda name, version: reference, alerts.append,
                           DriftPolicy(threshold=0.25, hysteresis=0.1, window=300, min_rows=300, every=rows))
    for b in range(batches):
        for tenant in ("acme", "globex"):
            x = rows_of(rows, tenant == "globex" and b >= drift_from)
            report = monitor.observe("assignment-ranker", "3", tenant, x, x @ np.array([-0.02, 1.0, 0.05]))
            if report is not None:
                top = ", ".join(f"{n}={v:.2f}" for n, v in report.top(2))
                out(f"batch {b:>2} {tenant:<7} drift score (max PSI) {report.score:.3f}  [{top}]")
    for a in alerts:
        out(f"ml.alerts <- {a.alert.kind} tenant={a.tenant_id} id={a.event_id[:8]}: {a.alert.message}")
    return alerts


def shadow_demo(tasks: int = 300, seed: int = 0, out: Callable[[str], None] = print) -> ShadowEvidence:
    """Champion (v7) and shadow challenger (v8) rank the same ``tasks``; the real assignee is known later."""
    from services.assignment.outcomes import SPEC

    rng = np.random.default_rng(seed)
    people = [f"u{i}" for i in range(10)]
    store = InMemoryAggregates(reducers(SPEC))
    joiner = OutcomeJoiner(SPEC, store, Emitter(lambda env: None, lambda: None))
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    events: list[Envelope] = []
    for i in range(tasks):
        truth = people[int(rng.integers(len(people)))]
        for version, skill in (("7", 0.45), ("8", 0.6)):  # how often each version puts the assignee first
            others = [p for p in people if p != truth]
            rng.shuffle(others)
            at = 0 if rng.random() < skill else int(rng.integers(1, len(people)))
            ranked = [*others[:at], truth, *others[at:]]
            p = events_pb2.AssignmentPrediction(task_id=f"task-{i}", candidates=[
                events_pb2.RankedCandidate(user_id=u) for u in ranked])
            p.provenance.model_name, p.provenance.model_version = "assignment-ranker", version
            events.append(new_envelope("acme", p, producer="assignment", occurred_at=t0))
        events.append(new_envelope("acme", events_pb2.TaskAssigned(task_id=f"task-{i}", assignee_id=truth),
                                   producer="backend", occurred_at=t0 + timedelta(days=int(rng.integers(1, 30)))))
    joiner(events)
    states = {v: s for v in ("assignment-ranker:7", "assignment-ranker:8") if (s := joiner.live("acme", v))}
    out(live_table(states, ["mrr", "hit@5"]))
    a, b = paired_scores(store, SPEC, "assignment-ranker:7", "assignment-ranker:8")
    evidence = shadow_evidence(SPEC, "assignment-ranker:7", "assignment-ranker:8", a, b, min_outcomes=100,
                               margin=0.02)
    out(evidence.summary())
    return evidence
