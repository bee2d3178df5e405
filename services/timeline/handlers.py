"""Event handling: every task/project/user event updates the timeline state; a task event re-forecasts
that task (published), then its project and open milestones are re-simulated and published when the
forecast moved, with a deadline-risk alert when P(miss) crosses the policy's threshold."""

from __future__ import annotations

import logging
from datetime import datetime

from sunday.ml.v1 import events_pb2

from mesh.bus import Publisher, TransientError
from mesh.errors import NotFound, Unavailable
from mesh.events import Envelope, new_envelope, occurred_at
from mesh.telemetry import current_trace_id
from services.timeline.alerts import DeadlineRiskAlerter
from services.timeline.predictor import TimelinePredictor
from services.timeline.state import apply_event, check

log = logging.getLogger(__name__)
PRODUCER = "timeline"
TASK_EVENTS = frozenset({"task_created", "task_updated", "task_assigned", "task_status_changed", "task_completed"})
MIN_CHANGE_HOURS = 1.0
"""A project or milestone forecast is republished when its p50 moves by more than this ..."""
MIN_CHANGE_P_MISS = 0.02
"""... or its deadline-miss probability by more than this."""
_SUBJECT = {events_pb2.ENTITY_KIND_PROJECT: "project", events_pb2.ENTITY_KIND_MILESTONE: "milestone"}


class TimelineHandler:
    """The consumer runner's handler (a ``Callable[[Envelope], None]``)."""

    def __init__(self, predictor: TimelinePredictor, publisher: Publisher, alerter: DeadlineRiskAlerter) -> None:
        self._predictor = predictor
        self._publisher = publisher
        self._alerter = alerter
        self._last: dict[tuple[str, str], tuple[datetime, float]] = {}

    def __call__(self, env: Envelope) -> None:
        check(env)
        project_id = apply_event(self._predictor.store, env)
        if project_id is None or env.type not in TASK_EVENTS | {"project_updated", "milestone_created"}:
            return
        now = occurred_at(env)
        trace_id = current_trace_id() or None
        try:
            if env.type in TASK_EVENTS:
                self._task(env, now, trace_id)
            self._project(env.tenant_id, project_id, now, trace_id)
        except Unavailable as exc:  # the model is not loaded (yet): retried by the runner's policy
            raise TransientError(str(exc)) from exc

    def _task(self, env: Envelope, now: datetime, trace_id: str | None) -> None:
        task_id = getattr(env, env.type).task_id
        task = self._predictor.store.task(env.tenant_id, task_id)
        if task is None or not task.is_open:
            return
        prediction = self._predictor.predict_task(env.tenant_id, task_id, now=now, trace_id=trace_id)
        self._publish(env.tenant_id, prediction)

    def _project(self, tenant_id: str, project_id: str, now: datetime, trace_id: str | None) -> None:
        try:
            forecast = self._predictor.predict_project(tenant_id, project_id, now=now, trace_id=trace_id)
        except NotFound as exc:
            log.info("no project forecast: %s", exc)
            return
        for prediction in (forecast.project, *forecast.milestones):
            if self._changed(tenant_id, prediction):
                self._publish(tenant_id, prediction)
            alert = self._alerter.observe(tenant_id, _SUBJECT[prediction.entity_kind], prediction.entity_id,
                                          prediction.deadline_miss_probability, prediction.provenance)
            if alert is not None:
                self._publisher.publish(new_envelope(tenant_id, alert, producer=PRODUCER))

    def _changed(self, tenant_id: str, p: events_pb2.TimelinePrediction) -> bool:
        key = (tenant_id, f"{p.entity_kind}:{p.entity_id}")
        now = (p.completion_p50.ToDatetime(), p.deadline_miss_probability)
        before = self._last.get(key)
        self._last[key] = now
        return before is None or (abs((now[0] - before[0]).total_seconds()) > MIN_CHANGE_HOURS * 3600.0
                                  or abs(now[1] - before[1]) > MIN_CHANGE_P_MISS)

    def _publish(self, tenant_id: str, prediction: events_pb2.TimelinePrediction) -> None:
        self._publisher.publish(new_envelope(tenant_id, prediction, producer=PRODUCER))
