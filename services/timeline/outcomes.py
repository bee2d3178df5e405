"""The truth of the timeline service's task predictions, declared for ``mesh.mlops``'s outcome joiner.

A task prediction (``timeline_prediction`` of a task) says when the task will be done (``completion_p50``)
as of when it was made; the truth is the ``task_completed`` event's time. The earliest prediction of each
model version for a task is judged (made at or near creation: the whole duration is ahead of it). A pair
scores ``abs_error_hours`` (|p50 completion - actual completion| in hours), the signed ``error_hours``
(positive: predicted too late) and whether the actual fell inside [p10, p90] (``covered``). The live metric
is the mean absolute error; it is degraded above :data:`MAE_THRESHOLD_HOURS`.
"""

from __future__ import annotations

from sunday.ml.v1 import events_pb2

from mesh.events import Envelope, occurred_at
from mesh.mlops import OutcomeSpec

TOPICS = ("predictions.timeline", "tasks")
MAE_THRESHOLD_HOURS = 120.0
"""Mean absolute error of the completion time (hours) past which the champion is degraded."""


def _keep(env: Envelope) -> dict[str, object]:
    p = env.timeline_prediction
    return {"p10": p.completion_p10.seconds, "p50": p.completion_p50.seconds, "p90": p.completion_p90.seconds}


def _key(env: Envelope) -> str | None:
    p = env.timeline_prediction
    if p.entity_kind != events_pb2.ENTITY_KIND_TASK or not p.completion_p50.seconds:
        return None
    return p.entity_id


def _truth(env: Envelope) -> tuple[str, dict[str, object]] | None:
    if env.type != "task_completed":
        return None
    return env.task_completed.task_id, {"done": int(occurred_at(env).timestamp())}


def score(kept: dict[str, object], truth: dict[str, object]) -> dict[str, float]:
    """Errors of one task's predicted completion given when it was actually completed."""
    done, p50 = int(truth["done"]), int(kept["p50"])  # type: ignore[call-overload]
    p10, p90 = int(kept["p10"]), int(kept["p90"])  # type: ignore[call-overload]
    error = (p50 - done) / 3600.0
    return {"abs_error_hours": abs(error), "error_hours": error, "covered": 1.0 if p10 <= done <= p90 else 0.0}


SPEC = OutcomeSpec(
    capability="timeline", prediction_type="timeline_prediction", prediction_key=_key, keep=_keep,
    outcome_types=("task_completed",), truth=_truth, score=score,
    metric="abs_error_hours", higher_is_better=False, threshold=MAE_THRESHOLD_HOURS, hysteresis=12.0,
    min_outcomes=30)
