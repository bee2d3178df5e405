"""Event handling, a batch at a time: the batch's task/user/project events update the service's state
(once each, atomically with their applied-marks), its new tasks are ranked and the predictions published
with ids derived from the input events; assignment and completion events become training labels.

Exactly once, step by step (the runner marks and commits only after the handler returns and the
publisher is flushed):
- state: a redelivered event is skipped by the store (its applied-mark committed with its effect);
- predictions: recomputed on redelivery and re-published under the SAME event id (derived from the
  input event id, the output type and the model version), so subscribers dedupe them;
- labels: appended at least once, each carrying its event id; readers dedupe (:func:`read_labels`).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from opentelemetry import context as otel_context
from sunday.ml.v1 import events_pb2

from mesh.bus import Publisher, producer_context
from mesh.errors import NotFound, Unavailable
from mesh.events import Envelope, InvalidEvent, new_envelope
from mesh.features import apply_rebuilding
from mesh.mlops import publish_shadow
from mesh.telemetry import current_trace_id
from services.assignment.asof import AsOf
from services.assignment.ranker import AssignmentRanker
from services.assignment.state import Label, StateStore, labels_of

log = logging.getLogger(__name__)
PRODUCER = "assignment"


class LabelSink(Protocol):
    def append_many(self, labels: Sequence[Label]) -> None: ...


class JsonlLabelSink:
    """Labels appended to a JSON-lines file in the offline store (one line per label, with its event id)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path

    def append_many(self, labels: Sequence[Label]) -> None:
        if not labels:
            return
        rows = [json.dumps({"event_id": x.event_id, "tenant_id": x.tenant_id, "task_id": x.task_id,
                            "user_id": x.user_id, "kind": x.kind, "at": x.at.isoformat()}) for x in labels]
        with self._path.open("a", encoding="utf-8") as f:
            f.write("\n".join(rows) + "\n")


def read_labels(path: Path) -> list[Label]:
    """The labels of a sink file, each event once (a redelivered batch appends its labels again)."""
    seen: dict[str, Label] = {}
    if not path.exists():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue  # a line cut by a crash mid-write is followed by its complete re-append
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        seen.setdefault(row["event_id"], Label(row["tenant_id"], row["task_id"], row["user_id"], row["kind"],
                                               datetime.fromisoformat(row["at"]), row["event_id"]))
    return list(seen.values())


def check(env: Envelope) -> None:
    """Reject what the envelope validation cannot see: values that would poison the features."""
    if env.type == "task_created":
        e = env.task_created
        if not math.isfinite(e.estimate_hours) or e.estimate_hours < 0:
            raise InvalidEvent(f"task_created.estimate_hours {e.estimate_hours} is not a non-negative number")
        if e.priority not in range(5):
            raise InvalidEvent(f"task_created.priority {e.priority} is not a known priority")
    if env.type == "task_completed" and (not math.isfinite(env.task_completed.actual_hours)
                                        or env.task_completed.actual_hours < 0):
        raise InvalidEvent(f"task_completed.actual_hours {env.task_completed.actual_hours} is invalid")
    if env.type == "user_joined" and any(not 0 <= s.level <= 5 for s in env.user_joined.skills):
        raise InvalidEvent("user_joined.skills has a level outside 0..5")


def segments(events: Sequence[Envelope]) -> Iterator[tuple[list[Envelope], list[Envelope]]]:
    """Split a batch into (events to apply, new tasks to rank after them) so that each task is ranked on
    the state as of its creation: a segment ends where an event follows a task creation. (Creations only
    change their own task's row, so the tasks of a segment do not see each other.) The batch is applied in
    one transaction; each segment's tasks read the state as of its end (:class:`AsOf`)."""
    apply: list[Envelope] = []
    created: list[Envelope] = []
    for env in events:
        if env.type != "task_created" and created:
            yield apply, created
            apply, created = [], []
        apply.append(env)
        if env.type == "task_created":
            created.append(env)
    if apply:
        yield apply, created


class AssignmentHandler:
    """The consumer runner's batch handler (a ``Callable[[Sequence[Envelope]], None]``)."""

    def __init__(self, state: StateStore, ranker: AssignmentRanker, publisher: Publisher,
                 labels: LabelSink | None = None, rebuild: Callable[[], Any] | None = None,
                 shadow: AssignmentRanker | None = None) -> None:
        """``shadow``: a ranker on the challenger, run on the same tasks and state; its predictions go to
        ``ml.shadow.assignment`` only (scored beside the champion's by the outcome joiner, ``mesh.mlops``)."""
        self._state = state
        self._ranker = ranker
        self._shadow = shadow
        self._publisher = publisher
        self._labels = labels
        self._rebuild = rebuild

    def __call__(self, events: Sequence[Envelope]) -> None:
        for env in events:
            check(env)  # an invalid event fails the batch: the runner retries it event by event
        parts = list(segments(events))
        # ONE transaction for the batch; a task created before the batch's last events is ranked on the state
        # as of its creation, read from the batch's rows as of its segment (services.assignment.asof)
        asof = AsOf(self._state.store, [apply for apply, _ in parts]) if len(parts) > 1 else None
        rebuilt: list[bool] = []

        def rebuild() -> Any:
            rebuilt.append(True)
            return self._rebuild() if self._rebuild is not None else None

        # StateMissing without a rebuild: retried by the bus
        apply_rebuilding(self._state.store, events, rebuild if self._rebuild is not None else None)
        for k, (to_apply, created) in enumerate(parts):
            # the last segment's state is the committed one; so is every segment's after a rebuild (the rows
            # read before it were of a lost state)
            view = self._state if asof is None or rebuilt or k == len(parts) - 1 else asof.view(k)
            if self._labels is not None:
                self._labels.append_many(labels_of(view, to_apply))
            for env, prediction in self._predict(created, view):
                self._publish(env, prediction)
            if self._shadow is not None and created:
                self._serve_shadow(self._shadow, created, view)

    def _serve_shadow(self, shadow: AssignmentRanker, created: Sequence[Envelope], view: StateStore) -> None:
        """The challenger on the same tasks, published to the shadow topic under ids derived like the
        champion's (its own version in them); a failing shadow never fails the batch."""
        try:
            shadowed = self._predict(created, view, shadow)
        except Exception as exc:  # no challenger loaded, a schema it cannot read...: the champion is unaffected
            log.warning("shadow ranking skipped for %d task(s): %s", len(created), exc)
            return
        for cause, prediction in shadowed:
            publish_shadow(self._publisher, new_envelope(cause.tenant_id, prediction, producer=PRODUCER,
                                                         caused_by=cause.event_id), "assignment")

    def _publish(self, cause: Envelope, prediction: events_pb2.AssignmentPrediction) -> None:
        """Publish in the trace of the input it answers (a batch's span only links to its inputs), so one
        trace runs from the backend's event to the subscriber's webhook."""
        context = producer_context(cause)
        token = otel_context.attach(context) if context is not None else None
        try:
            prediction.provenance.trace_id = current_trace_id() or prediction.provenance.trace_id
            self._publisher.publish(new_envelope(cause.tenant_id, prediction, producer=PRODUCER,
                                                 caused_by=cause.event_id))
        finally:
            if token is not None:
                otel_context.detach(token)

    def _predict(self, created: Sequence[Envelope], state: StateStore, ranker: AssignmentRanker | None = None
                 ) -> list[tuple[Envelope, events_pb2.AssignmentPrediction]]:
        """Rank a segment's new tasks on ``state``, one ``rank_many`` per tenant (one read of the union of
        candidates, one model run); a task nobody can be ranked for yields nothing (see
        :meth:`_nothing_to_rank`)."""
        out = []
        trace_id = current_trace_id() or None
        by_tenant: dict[str, list[Envelope]] = {}
        for env in created:
            by_tenant.setdefault(env.tenant_id, []).append(env)
        for tenant, envs in by_tenant.items():
            outcomes = (ranker or self._ranker).rank_many(tenant, [e.task_created.task_id for e in envs],
                                                          trace_id=trace_id,
                                                          state=None if state is self._state else state)
            for env, outcome in zip(envs, outcomes, strict=True):
                if isinstance(outcome, events_pb2.AssignmentPrediction):
                    out.append((env, outcome))
                elif isinstance(outcome, NotFound):
                    self._nothing_to_rank(env, outcome)
                else:
                    raise outcome
        return out

    def _nothing_to_rank(self, env: Envelope, exc: NotFound) -> None:
        """No candidates: fine for a tenant nobody joined yet, a transient failure when the state is gone."""
        if not self._state.store.built():
            raise Unavailable(f"assignment state is missing; not ranking {env.task_created.task_id}: {exc}") from exc
        log.info("no prediction for %s: %s", env.task_created.task_id, exc)
