"""The truth of the assignment service's predictions, declared for ``mesh.mlops``'s outcome joiner.

A prediction ranks people for a new task (``assignment_prediction``, keyed by task); its truth is who the
task was first assigned to (``task_assigned``), or who completed it when no assignment was seen
(``task_completed`` with an assignee: the earliest truth event holds). A pair scores ``hit@k`` (the person
is among the top ``k`` ranked) and ``mrr`` (1 / their rank; 0 when they are not among the candidates the
prediction listed). The live metric is MRR; it is degraded below :data:`MRR_THRESHOLD`.
"""

from __future__ import annotations

from mesh.events import Envelope
from mesh.mlops import OutcomeSpec

TOPICS = ("predictions.assignment", "tasks")
"""What the outcome consumer reads: the predictions and the task events that carry the truth."""
KEEP = 20
"""Ranked people kept per prediction (beyond them a pair scores 0)."""
K = 5
MRR_THRESHOLD = 0.25
"""Live MRR below which the champion is degraded (the offline ensemble is ~0.5 on the simulated world, the
best baseline ~0.35; see bench assignment)."""


def _keep(env: Envelope) -> dict[str, object]:
    return {"ranked": [c.user_id for c in env.assignment_prediction.candidates][:KEEP]}


def _truth(env: Envelope) -> tuple[str, dict[str, object]] | None:
    if env.type == "task_assigned" and env.task_assigned.assignee_id:
        return env.task_assigned.task_id, {"user_id": env.task_assigned.assignee_id}
    if env.type == "task_completed" and env.task_completed.assignee_id:
        return env.task_completed.task_id, {"user_id": env.task_completed.assignee_id}
    return None


def score(kept: dict[str, object], truth: dict[str, object]) -> dict[str, float]:
    """``hit@5`` and ``mrr`` of one prediction given who actually got the task."""
    ranked = list(kept["ranked"])  # type: ignore[call-overload]
    if truth["user_id"] not in ranked:
        return {f"hit@{K}": 0.0, "mrr": 0.0}
    rank = ranked.index(truth["user_id"]) + 1
    return {f"hit@{K}": 1.0 if rank <= K else 0.0, "mrr": 1.0 / rank}


SPEC = OutcomeSpec(
    capability="assignment", prediction_type="assignment_prediction",
    prediction_key=lambda env: env.assignment_prediction.task_id or None, keep=_keep,
    outcome_types=("task_assigned", "task_completed"), truth=_truth, score=score,
    metric="mrr", higher_is_better=True, threshold=MRR_THRESHOLD, hysteresis=0.05, min_outcomes=30)
