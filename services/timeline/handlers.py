"""Event handling, a batch at a time: the batch's task/project/user events update the timeline state (once
each, atomically with their applied-marks); then everything the batch touched is forecast together — ONE
model run over the open tasks involved and ONE Monte-Carlo simulation per project (per tenant), however
many of the batch's events touched them — and published:

- a `TimelinePrediction` of the task for every task event that does not close it (`predicts_task`), its
  id derived from that input event (`new_envelope(caused_by=...)`): one per event, whatever the batching;
- the forecast of each project the batch touched and of its open milestones, when it moved, with a
  deadline-risk alert on ``ml.alerts`` when P(miss) crosses the policy's threshold (`alerts.RiskTracker`).

The work one event can cause is bounded: at most one project forecast per project per batch, simulations
capped per forecast (`predictor.simulations_for`).

Exactly once, step by step (the runner marks and commits only after the handler returns and the publisher
is flushed): a redelivered event is skipped by the state store; task predictions are recomputed and
re-published under the SAME ids; project/milestone forecasts and alerts are published, flushed, and only
then recorded in the state (their ids derive from the recorded counts, so a crash before the record
re-publishes the same ids, see `alerts`). State that is missing (Redis lost it) is rebuilt when the handler can, else a
transient failure (`StateMissing`, retried by the bus) — never a silent skip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sunday.ml.v1 import events_pb2

from mesh.bus import Publisher
from mesh.errors import Unavailable
from mesh.events import STATUS_DONE, Envelope, new_envelope, occurred_at
from mesh.features import InMemoryAggregates, StateMissing
from mesh.models import ModelSource
from mesh.telemetry import current_trace_id
from services.timeline.alerts import DEFAULT_POLICY, PRODUCER, AlertPolicy, RiskTracker, output_reducers
from services.timeline.predictor import DEFAULT_SIMULATIONS, Forecasts, TimelinePredictor
from services.timeline.state import TimelineState, check, project_of

log = logging.getLogger(__name__)
TASK_EVENTS = frozenset({"task_created", "task_updated", "task_assigned", "task_status_changed", "task_completed"})
FORECAST_EVENTS = TASK_EVENTS | {"project_updated", "milestone_created"}
"""Events after which their project is forecast again."""


def predicts_task(env: Envelope) -> bool:
    """Whether ``env`` yields a prediction of its task: a task event that does not close it (read from the
    event alone, so the count of predictions does not depend on how events were batched or redelivered)."""
    if env.type not in TASK_EVENTS or env.type == "task_completed":
        return False
    return not (env.type == "task_status_changed" and env.task_status_changed.to_status == STATUS_DONE)


@dataclass
class _Work:
    """What one tenant's part of a batch asks for."""

    now: datetime
    task_events: list[Envelope] = field(default_factory=list)
    projects: dict[str, str] = field(default_factory=dict)
    """the projects to forecast -> the id of the batch's last event on each (what caused its forecast)"""


def plan(events: Sequence[Envelope]) -> dict[str, _Work]:
    """Per tenant: the task events to answer, the projects to forecast, and the time to forecast at (the
    newest event time: the state is as of the whole batch)."""
    out: dict[str, _Work] = {}
    for env in events:
        if env.type not in FORECAST_EVENTS:
            continue
        at = occurred_at(env)
        work = out.setdefault(env.tenant_id, _Work(at))
        work.now = max(work.now, at)
        project_id = project_of(env)
        if project_id is not None:
            work.projects[project_id] = env.event_id
        if predicts_task(env):
            work.task_events.append(env)
    return out


class TimelineHandler:
    """The consumer runner's batch handler (a ``Callable[[Sequence[Envelope]], None]``)."""

    def __init__(self, predictor: TimelinePredictor, state: TimelineState, publisher: Publisher,
                 risk: RiskTracker, rebuild: Callable[[], Any] | None = None) -> None:
        """``state`` is the one the predictor reads; ``rebuild`` (when given) rebuilds it from the inputs
        when it is found missing."""
        self._predictor = predictor
        self._state = state
        self._publisher = publisher
        self._risk = risk
        self._rebuild = rebuild

    @property
    def predictor(self) -> TimelinePredictor:
        return self._predictor

    @property
    def state(self) -> TimelineState:
        return self._state

    def __call__(self, events: Sequence[Envelope] | Envelope) -> None:
        if isinstance(events, Envelope):
            events = [events]  # one event (a per-event caller) is a batch of one
        for env in events:
            check(env)  # an invalid event fails the batch: the runner retries it event by event
        self._apply(events)
        trace_id = current_trace_id() or None
        recorded: list[Envelope] = []
        for tenant_id, work in plan(events).items():
            forecasts = self._predictor.forecast_batch(tenant_id, [getattr(e, e.type).task_id for e in
                                                                   work.task_events], list(work.projects),
                                                       work.now, trace_id)
            self._tasks(tenant_id, work, forecasts)
            recorded += self._projects(tenant_id, work, forecasts)
        if recorded:
            self._publisher.flush()  # delivered first: a crash before the record re-publishes the same ids
            self._risk.record(recorded)

    def _apply(self, events: Sequence[Envelope]) -> None:
        try:
            self._state.apply(events, require_built=True)
        except StateMissing:
            if self._rebuild is None:
                raise  # transient: retried until the state is rebuilt
            log.warning("timeline state is missing (lost with a Redis restart?): rebuilding before forecasting")
            self._rebuild()
            self._state.apply(events, require_built=True)

    def _tasks(self, tenant_id: str, work: _Work, forecasts: Forecasts) -> None:
        for env in work.task_events:
            task_id = getattr(env, env.type).task_id
            prediction = forecasts.tasks.get(task_id)
            if prediction is None:
                self._unknown(f"task {task_id!r}")
                continue
            self._publisher.publish(new_envelope(tenant_id, prediction, producer=PRODUCER, occurred_at=work.now,
                                                 caused_by=env.event_id))

    def _projects(self, tenant_id: str, work: _Work, forecasts: Forecasts) -> list[Envelope]:
        predictions: list[tuple[events_pb2.TimelinePrediction, str]] = []
        for project_id, cause in work.projects.items():
            forecast = forecasts.projects.get(project_id)
            if forecast is None:
                self._unknown(f"project {project_id!r}")
                continue
            predictions += [(p, cause) for p in (forecast.project, *forecast.milestones)]
        outputs = self._risk.outputs(tenant_id, predictions, work.now)
        for env in outputs:
            self._publisher.publish(env)
        return outputs

    def _unknown(self, what: str) -> None:
        """Nothing to forecast: fine for an id the state never saw, a transient failure when it is lost."""
        if not self._state.store.built():
            raise Unavailable(f"timeline state is missing: cannot forecast {what}")
        log.info("no forecast for %s: not known to the timeline state", what)


def in_memory_handler(model: ModelSource, publisher: Publisher, *, simulations: int = DEFAULT_SIMULATIONS,
                      policy: AlertPolicy = DEFAULT_POLICY, milestone_model: ModelSource | None = None
                      ) -> TimelineHandler:
    """The service's handler on an empty in-memory state (tests, the gateway's e2e harness): its
    ``predictor`` answers the gRPC calls from the same state."""
    state = TimelineState(InMemoryAggregates(output_reducers(policy)))
    state.store.mark_built()  # nothing to rebuild from: an empty world is complete
    predictor = TimelinePredictor(state, model, simulations=simulations, milestone_model=milestone_model)
    return TimelineHandler(predictor, state, publisher, RiskTracker(state, policy))
