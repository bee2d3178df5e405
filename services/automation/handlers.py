"""Event handling, a batch at a time: the batch's events update the automation facts (once each, atomically
with their applied-marks); then, for each tenant the batch touched and whose last pass is older than
``mine_interval_s``, one suggestion pass (mine -> model -> templates -> validate), whose new suggestions
are offered to the approval store and announced; open suggestions past their time expire. A tenant whose
newest facts came within the interval is passed later: at a later batch, or when the consumer is idle
(:meth:`AutomationHandler.on_idle`, called by the runner), so the tail of a burst is mined too.

Exactly once: facts through the store's applied-marks; a suggestion's events carry ids derived from the
suggestion id, its status and when it was offered, and are marked published after the publisher has them,
so a redelivered batch or a crash re-publishes at most the SAME ids (subscribers dedupe).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from mesh.bus import Publisher
from mesh.events import Envelope, InvalidEvent
from mesh.features import apply_rebuilding
from services.automation.approval import (
    ApprovalStore,
    IllegalTransition,
    SuggestionRecord,
    mark_published,
    published,
)
from services.automation.engine import EngineConfig, prediction_envelope, propose, record_of, suggestion_envelope
from services.automation.miner import is_subsequence
from services.automation.model import VersionedScorer
from services.automation.state import EVENT_TYPES, FactStore
from services.automation.templates import Embedder

log = logging.getLogger(__name__)
_TASK_EVENTS = ("task_created", "task_updated", "task_assigned", "task_status_changed", "task_commented")


def check(env: Envelope) -> None:
    """What the envelope validation cannot see: events the facts could not place."""
    if env.type in _TASK_EVENTS and not getattr(env, env.type).task_id:
        raise InvalidEvent(f"{env.type} without a task_id")
    if env.type == "user_activity" and not env.user_activity.user_id:
        raise InvalidEvent("user_activity without a user_id")


class AutomationHandler:
    """The consumer runner's batch handler."""

    def __init__(self, facts: FactStore, approvals: ApprovalStore, publisher: Publisher, scorer: VersionedScorer,
                 *, embedder: Embedder | None = None, config: EngineConfig | None = None,
                 mine_interval_s: float = 60.0, rebuild: Callable[[], Any] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.facts = facts
        self.approvals = approvals
        self._publisher = publisher
        self._scorer = scorer
        self._embedder = embedder
        self._config = config or EngineConfig()
        self._interval = mine_interval_s
        self._rebuild = rebuild
        self._clock = clock
        self._last_pass: dict[str, float] = {}
        self._pending: set[str] = set()
        """Tenants with facts newer than their last pass (mined on a later batch or when idle)."""

    def __call__(self, events: Sequence[Envelope]) -> None:
        for env in events:
            check(env)  # an invalid event fails the batch: the runner retries it event by event -> DLQ
        apply_rebuilding(self.facts.store, list(events), self._rebuild)
        now = self._clock()
        self._pending.update(e.tenant_id for e in events if e.type in EVENT_TYPES)
        self._pass_due(now)

    def on_idle(self) -> None:
        """Called by the runner while no event arrives: the tenants whose last facts came after their last
        pass are mined once the interval has passed (else the tail of a burst would wait for an event)."""
        self._pass_due(self._clock())

    def _pass_due(self, now: float) -> None:
        for tenant in sorted(self._pending):
            if now - self._last_pass.get(tenant, float("-inf")) >= self._interval:
                self.suggest(tenant, now)
                self._pending.discard(tenant)  # after the pass: a failed one is tried again

    def last_pass(self, tenant_id: str) -> float | None:
        """When this replica last ran a suggestion pass for the tenant (None: never)."""
        return self._last_pass.get(tenant_id)

    def suggest(self, tenant_id: str, now: float) -> list[SuggestionRecord]:
        """One suggestion pass for a tenant; the records now open (announced once each)."""
        self._last_pass[tenant_id] = now
        for expired in self.approvals.expire_due(tenant_id, now):
            self.announce(expired.record)
        snap = self._scorer.snapshot()
        if snap is None:
            log.info("automation: no next-action model loaded yet; tenant %s not mined (train: %s)", tenant_id,
                     "python -m services.automation.train")
            return []
        version, model = snap
        out = []
        for proposal in propose(self.facts, tenant_id, model, self._embedder, self._config):
            _, stored = self.approvals.offer(record_of(proposal), now)
            if stored.status == "suggested":
                self.announce(stored, version)
                out.append(stored)
        self._supersede(tenant_id, out, now)
        return out

    def _supersede(self, tenant_id: str, current: Sequence[SuggestionRecord], now: float) -> None:
        """An open suggestion whose steps are a strict part of a newer one for the same person and trigger
        (seen while the rest of the steps were still on their way) expires in its favour."""
        for old in self.approvals.open(tenant_id, limit=10_000):
            better = next((r for r in current if r.suggestion_id != old.suggestion_id and r.user_id == old.user_id
                           and (r.trigger_type, r.condition) == (old.trigger_type, old.condition)
                           and len(r.steps) > len(old.steps) and is_subsequence(old.steps, r.steps)), None)
            if better is None:
                continue
            try:
                moved = self.approvals.transition(tenant_id, old.suggestion_id, "expired", now,
                                                  reason=f"superseded by {better.suggestion_id}")
            except IllegalTransition:
                continue  # decided meanwhile
            self.announce(moved.record)

    def announce(self, record: SuggestionRecord, model_version: str = "") -> None:
        """Publish the record's status event (and, for a new suggestion, its prediction) unless done."""
        if published(self.approvals, record):
            return
        self._publisher.publish(suggestion_envelope(record, model_version))
        if record.status == "suggested":
            self._publisher.publish(prediction_envelope(record, model_version))
        self._publisher.flush()
        mark_published(self.approvals, record)
