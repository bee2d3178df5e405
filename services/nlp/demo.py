"""What the demo week's nlp predictions amount to, for ``scripts/demo.py``.

- ``results(predictions)``: the envelopes read from ``ml.predictions.nlp`` -> a JSON-ready summary: the
  duplicate pairs found, the sentiment per project (counts and mean signed score), every meeting summary
  with its action items, and the count of predictions per kind.
- ``week_report(predictions, events=())``: the same, shaped for the demo's screen: ``duplicates`` with both
  tasks' titles (from the simulation's ``task_created`` events in ``events``, when given), ONE ``meeting``
  (the summary with the most action items, with the meeting's title; None when no transcript was summarised),
  ``sentiment_per_project`` (with the project's name when ``events`` has its ``project_created``), and
  ``predictions`` (count per kind). ``render(report)`` -> the lines to print.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
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


def week_report(predictions: Sequence[Envelope], events: Iterable[Envelope] = (), *, max_duplicates: int = 10
                ) -> dict[str, Any]:
    """The demo's view of the week (see the module docstring): ``predictions`` are envelopes from
    ``ml.predictions.nlp`` (other types ignored, redeliveries counted once), ``events`` the simulation's
    input events (optional: only used for titles and names)."""
    titles: dict[tuple[str, str], str] = {}
    projects: dict[tuple[str, str], str] = {}
    meetings: dict[tuple[str, str], str] = {}
    for env in events:
        if env.type == "task_created":
            titles[(env.tenant_id, env.task_created.task_id)] = env.task_created.title
        elif env.type == "task_updated" and env.task_updated.HasField("title"):
            titles[(env.tenant_id, env.task_updated.task_id)] = env.task_updated.title
        elif env.type == "project_created":
            projects[(env.tenant_id, env.project_created.project_id)] = env.project_created.name
        elif env.type == "meeting_transcript":
            meetings[(env.tenant_id, env.meeting_transcript.meeting_id)] = env.meeting_transcript.title
    unique = {p.event_id: p for p in predictions if p.type == "nlp_prediction"}
    duplicates: list[dict[str, Any]] = []
    for env in unique.values():
        p = env.nlp_prediction
        if p.kind == "duplicates":
            duplicates += [{"tenant_id": env.tenant_id, "task_id": p.subject_id,
                            "title": titles.get((env.tenant_id, p.subject_id), ""), "duplicate_of": d.item_id,
                            "duplicate_title": titles.get((env.tenant_id, d.item_id), d.label),
                            "project_id": p.project_id, "score": round(d.score, 3)} for d in p.duplicates]
    duplicates.sort(key=lambda d: (-d["score"], d["task_id"]))
    summaries = sorted((env for env in unique.values() if env.nlp_prediction.kind == "summary"),
                       key=lambda env: (-len(env.nlp_prediction.action_items), env.nlp_prediction.subject_id))
    meeting = None
    if summaries:
        env = summaries[0]
        p = env.nlp_prediction
        meeting = {"tenant_id": env.tenant_id, "meeting_id": p.subject_id, "project_id": p.project_id,
                   "title": meetings.get((env.tenant_id, p.subject_id), ""), "summary": p.summary,
                   "action_items": list(p.action_items)}
    sentiment: dict[str, dict[str, Any]] = {}
    by_tenant: dict[str, list[Any]] = defaultdict(list)
    for env in unique.values():
        if env.nlp_prediction.kind == "sentiment":
            by_tenant[env.tenant_id].append(env.nlp_prediction)
    for tenant, preds in sorted(by_tenant.items()):
        for project, row in _sentiment(preds).items():
            name = projects.get((tenant, project), "")
            key = project if len(by_tenant) == 1 else f"{tenant}/{project}"
            sentiment[key] = {**({"name": name} if name else {}), **row}
    return {"duplicates": duplicates[:max_duplicates], "duplicates_found": len(duplicates), "meeting": meeting,
            "sentiment_per_project": sentiment,
            "predictions": dict(Counter(env.nlp_prediction.kind for env in unique.values()))}


def render(report: dict[str, Any]) -> list[str]:
    """The lines the demo prints for a :func:`week_report`."""
    lines = [f"nlp predictions: {report['predictions'] or 'none'}",
             f"duplicates found: {report['duplicates_found']}"]
    for d in report["duplicates"]:
        lines.append(f"  {d['task_id']} {d['title']!r} ~ {d['duplicate_of']} {d['duplicate_title']!r} "
                     f"(score {d['score']:.2f})")
    meeting = report["meeting"]
    if meeting is None:
        lines.append("meeting summary: none (no transcript was summarised)")
    else:
        lines.append(f"meeting {meeting['meeting_id']} {meeting['title']!r}: {meeting['summary']}")
        lines += [f"  action: {item}" for item in meeting["action_items"]] or ["  (no action items)"]
    lines.append("comment sentiment per project:")
    for project, row in report["sentiment_per_project"].items():
        name = f" ({row['name']})" if "name" in row else ""
        lines.append(f"  {project}{name}: {row['comments']} comments, {row['negative']} negative / "
                     f"{row['neutral']} neutral / {row['positive']} positive, mean {row['mean_score']:+.2f}")
    return lines
