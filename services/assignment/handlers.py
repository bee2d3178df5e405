"""Event handling: every task/user/project event keeps the features fresh in the online store (Feast);
a new task is ranked and the prediction published; assignment and completion events become training
labels."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Protocol

from mesh.bus import Publisher, TransientError
from mesh.errors import NotFound, Unavailable
from mesh.events import Envelope, InvalidEvent, new_envelope
from mesh.telemetry import current_trace_id
from services.assignment.online import FeatureSync
from services.assignment.ranker import AssignmentRanker
from services.assignment.state import Label

log = logging.getLogger(__name__)
PRODUCER = "assignment"


class LabelSink(Protocol):
    def append(self, label: Label) -> None: ...


class JsonlLabelSink:
    """Labels appended to a JSON-lines file in the offline store (one line per label)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path

    def append(self, label: Label) -> None:
        row = {"tenant_id": label.tenant_id, "task_id": label.task_id, "user_id": label.user_id,
               "kind": label.kind, "at": label.at.isoformat()}
        with self._path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")


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


class AssignmentHandler:
    """The consumer runner's handler (a ``Callable[[Envelope], None]``)."""

    def __init__(self, sync: FeatureSync, ranker: AssignmentRanker, publisher: Publisher,
                 labels: LabelSink | None = None) -> None:
        self._sync = sync
        self._ranker = ranker
        self._publisher = publisher
        self._labels = labels

    def __call__(self, env: Envelope) -> None:
        check(env)
        label = self._sync.apply(env)  # the rows are in the online store before the ranker reads them
        if label is not None and self._labels is not None:
            self._labels.append(label)
        if env.type == "task_created":
            self._predict(env)

    def _predict(self, env: Envelope) -> None:
        try:
            prediction = self._ranker.rank_assignees(env.tenant_id, env.task_created.task_id,
                                                     trace_id=current_trace_id() or None)
        except NotFound as exc:  # no people known yet in this tenant: nothing to rank
            log.info("no prediction for %s: %s", env.task_created.task_id, exc)
            return
        except Unavailable as exc:  # the model is not loaded (yet): retried by the runner's policy
            raise TransientError(str(exc)) from exc
        self._publisher.publish(new_envelope(env.tenant_id, prediction, producer=PRODUCER))
