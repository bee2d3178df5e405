"""What the demo week's nlp predictions amount to, for ``scripts/demo.py``: ``results(predictions)`` takes the
envelopes read from ``ml.predictions.nlp`` and returns a JSON-ready summary: the duplicate pairs found, the
sentiment per project (counts and mean signed score), and the meeting summaries with their action items."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from mesh.events import Envelope

SIGN = {"negative": -1.0, "neutral": 0.0, "positive": 1.0}


def results(predictions: Sequence[Envelope]) -> dict[str, Any]:
    """Summary of the nlp predictions (other envelope types are ignored; a prediction delivered twice,
    with the same event id, counts once)."""
    unique = {p.event_id: p for p in predictions if p.type == "nlp_prediction"}
    nlp = [p.nlp_prediction for p in unique.values()]
    return {"duplicates": _duplicates([p for p in nlp if p.kind == "duplicates"]),
            "sentiment_per_project": _sentiment([p for p in nlp if p.kind == "sentiment"]),
            "summaries": [{"meeting_id": p.subject_id, "project_id": p.project_id, "summary": p.summary,
                           "action_items": list(p.action_items)} for p in nlp if p.kind == "summary"],
            "predictions": dict(Counter(p.kind for p in nlp))}


def _duplicates(preds: Sequence[Any]) -> list[dict[str, Any]]:
    found = [{"task_id": p.subject_id, "project_id": p.project_id, "duplicate_of": d.item_id,
              "duplicate_title": d.label, "score": round(d.score, 3)} for p in preds for d in p.duplicates]
    return sorted(found, key=lambda f: -f["score"])


def _sentiment(preds: Sequence[Any]) -> dict[str, dict[str, Any]]:
    by_project: dict[str, list[Any]] = defaultdict(list)
    for p in preds:
        by_project[p.project_id or "(no project)"].append(p)
    out = {}
    for project, items in sorted(by_project.items()):
        counts = Counter(p.sentiment for p in items)
        out[project] = {"comments": len(items), **{label: counts.get(label, 0) for label in SIGN},
                        "mean_score": round(sum(SIGN.get(p.sentiment, 0.0) for p in items) / len(items), 3)}
    return out
