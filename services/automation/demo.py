"""What the demo shows for automation: the suggestions that came out beside the simulator's planted
workflows — found, missed and wrong.

A suggestion is *correct* when its person, trigger type, trigger condition and steps (in order) are those
of a planted workflow of its tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mesh.events import Envelope
from simulator import Simulation, WorkflowTruth

Key = tuple[str, str, str, str, tuple[str, ...]]


def truth_key(w: WorkflowTruth) -> Key:
    return (w.tenant_id, w.user_id, w.trigger_type, w.trigger_condition,
            tuple(f"{s.action}:{s.detail}" for s in w.steps))


def suggestion_key(env: Envelope) -> Key | None:
    """The key of a Suggestion (ml.suggestions) or AutomationPrediction envelope; None for other events."""
    if env.type == "suggestion":
        s, user, rule = env.suggestion, env.suggestion.user_id, env.suggestion.rule
        if s.capability != "automation":
            return None
    elif env.type == "automation_prediction":
        user, rule = env.automation_prediction.user_id, env.automation_prediction.rule
    else:
        return None
    trigger_type, _, condition = rule.trigger.partition(" ")
    return (env.tenant_id, user, trigger_type, condition.strip(), tuple(rule.actions))


CLOSED = ("expired", "rejected", "invalid")


def standing(suggestions: Sequence[Envelope]) -> list[Envelope]:
    """The suggestions that stand: per suggestion id its newest Suggestion event, unless that one closed it
    (expired, superseded, rejected); AutomationPrediction envelopes count only without Suggestion events."""
    events = [e for e in suggestions if e.type == "suggestion" and e.suggestion.capability == "automation"]
    if not events:
        return [e for e in suggestions if e.type == "automation_prediction"]
    newest: dict[str, Envelope] = {}
    order = {"": 0, "suggested": 1, "approved": 2, "rejected": 2, "expired": 2, "invalid": 2}
    for env in events:
        key = env.suggestion.suggestion_id or env.event_id
        rank = (env.occurred_at.ToNanoseconds(), order.get(env.suggestion.status, 1))
        if key not in newest or rank >= (newest[key].occurred_at.ToNanoseconds(),
                                         order.get(newest[key].suggestion.status, 1)):
            newest[key] = env
    return [e for e in newest.values() if e.suggestion.status not in CLOSED]


def score(truth: Sequence[WorkflowTruth], suggestions: Sequence[Envelope]) -> dict[str, Any]:
    """Found / missed / wrong of the standing suggestions (see :func:`standing`) against the planted truth."""
    planted = {truth_key(w): w for w in truth}
    keys = {k for k in (suggestion_key(e) for e in standing(suggestions)) if k is not None}
    found = sorted(k for k in keys if k in planted)
    wrong = sorted(k for k in keys if k not in planted)
    missed = sorted(k for k in planted if k not in keys)

    def row(k: Key) -> dict[str, Any]:
        out: dict[str, Any] = {"tenant_id": k[0], "user_id": k[1], "trigger": f"{k[2]} {k[3]}", "steps": list(k[4])}
        if k in planted:
            out["workflow_id"] = planted[k].workflow_id
        return out

    return {
        "found": [row(k) for k in found], "missed": [row(k) for k in missed], "wrong": [row(k) for k in wrong],
        "recall": len(found) / len(planted) if planted else 0.0,
        "precision": len(found) / len(keys) if keys else 0.0,
        "planted": len(planted), "suggested": len(keys),
    }


def results(sim: Simulation, suggestions: list[Envelope]) -> dict[str, Any]:
    """Found / missed / wrong suggestions against the simulation's planted workflows, with recall and
    precision (``scripts/demo.py`` prints this)."""
    return score(sim.truth.workflows, suggestions)
