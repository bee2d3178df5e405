"""Event handling, a batch at a time: the batch's activity is applied to the service's state (windows,
scores, rules, incidents: once each, atomically with the applied-marks, see `state`), then the alerts in
the outbox of every event of the batch are published to ml.alerts under their deterministic ids.

Exactly once, step by step (the runner marks and commits only after the handler returns and the publisher
is flushed): a redelivered event is skipped by the store; the alerts it raised are read back from the
outbox and published again under the SAME ids, so subscribers (the gateway's webhooks) dedupe them.
An invalid activity event fails the batch; the runner retries it event by event and dead-letters that one.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context

from mesh.bus import Publisher, producer_context
from mesh.events import Envelope
from mesh.telemetry import ALERTS_RAISED, PREDICTION_SCORE
from services.anomaly.rules import RuleSet
from services.anomaly.rules_store import RulesStore
from services.anomaly.state import DetectorContext, OutboxState, check, outbox_ids

log = logging.getLogger(__name__)
CAPABILITY = "anomaly"
_SEVERITY_NAMES = {1: "info", 2: "warning", 3: "critical"}


class AnomalyHandler:
    """The consumer runner's batch handler (a ``Callable[[Sequence[Envelope]], None]``)."""

    def __init__(self, store: Any, dctx: DetectorContext, publisher: Publisher, rules: RulesStore | None = None,
                 default_rules: RuleSet | None = None) -> None:
        """``store``: the aggregate store built with ``anomaly_reducers(dctx)``; ``rules``: per-tenant rules
        (None: ``default_rules`` for everyone)."""
        self._store = store
        self._dctx = dctx
        self._publisher = publisher
        self._rules = rules
        self._default = default_rules
        self._batch_rules: dict[str, RuleSet] = {}
        dctx.rules_of = self._rules_of

    def _rules_of(self, tenant_id: str) -> RuleSet:
        found = self._batch_rules.get(tenant_id)
        if found is None:
            if self._rules is not None:
                found = self._batch_rules[tenant_id] = self._rules.get(tenant_id).rules
            elif self._default is not None:
                found = self._default
            else:
                raise RuntimeError("the anomaly handler has neither a rules store nor default rules")
        return found

    def __call__(self, events: Sequence[Envelope]) -> None:
        for env in events:
            check(env)  # an invalid event fails the batch: the runner retries it event by event
        ids = outbox_ids(events)
        if not ids:
            return
        if self._rules is not None:  # one round trip for the batch's tenants (a change applies from the next batch)
            self._batch_rules = {t: r.rules for t, r in self._rules.rules_for(sorted(ids)).items()}
        self._dctx.scored.clear()
        applied = self._store.apply(events)
        fresh = {s.entity_id for s in applied.changed if isinstance(s, OutboxState)}
        for scored in self._dctx.scored.values():
            PREDICTION_SCORE.labels(CAPABILITY, scored.tenant_id).observe(scored.margin)
        causes = {env.event_id: env for env in events}
        for tenant, event_ids in ids.items():
            boxes = self._store.load_many(OutboxState, tenant, event_ids)
            for event_id, box in zip(event_ids, boxes, strict=True):
                if box is None:
                    continue
                for alert in box.envelopes():
                    self._publish(causes[event_id], alert)
                    if event_id in fresh:
                        ALERTS_RAISED.labels(CAPABILITY, alert.alert.rule,
                                             _SEVERITY_NAMES.get(int(alert.alert.severity), "unspecified")).inc()

    def _publish(self, cause: Envelope, alert: Envelope) -> None:
        """Publish in the trace of the input that raised it."""
        context = producer_context(cause)
        token = otel_context.attach(context) if context is not None else None
        try:
            self._publisher.publish(alert)
        finally:
            if token is not None:
                otel_context.detach(token)
