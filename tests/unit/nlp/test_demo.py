"""The demo summary counts each prediction once and groups sentiment by project."""

from __future__ import annotations

from sunday.ml.v1 import events_pb2 as e

from mesh.events import new_envelope
from services.nlp.demo import results


def test_results_summarise_duplicates_sentiment_and_summaries() -> None:
    def nlp(**kw: object) -> e.Envelope:
        return new_envelope("tenant-a", e.NlpPrediction(**kw), producer="nlp")  # type: ignore[arg-type]

    dup = nlp(kind="duplicates", subject_id="t-4", project_id="p-1",
              duplicates=[e.ScoredItem(item_id="t-1", score=0.91, label="NameNode crash")])
    preds = [dup, dup,  # redelivered: counted once
             nlp(kind="sentiment", subject_id="c-1", project_id="p-1", sentiment="negative"),
             nlp(kind="sentiment", subject_id="c-2", project_id="p-1", sentiment="positive"),
             nlp(kind="sentiment", subject_id="c-3", project_id="p-2", sentiment="negative"),
             nlp(kind="summary", subject_id="m-1", project_id="p-1", summary="We agreed.",
                 action_items=["Ada: fix login by Friday"]),
             new_envelope("tenant-a", e.Alert(alert_id="a", dedup_key="k"), producer="x")]
    out = results(preds)
    assert out["duplicates"] == [{"task_id": "t-4", "project_id": "p-1", "duplicate_of": "t-1",
                                  "duplicate_title": "NameNode crash", "score": 0.91}]
    assert out["sentiment_per_project"]["p-1"]["comments"] == 2
    assert out["sentiment_per_project"]["p-1"]["mean_score"] == 0.0
    assert out["sentiment_per_project"]["p-2"]["negative"] == 1
    assert out["summaries"][0]["action_items"] == ["Ada: fix login by Friday"]
    assert out["predictions"] == {"duplicates": 1, "sentiment": 3, "summary": 1}


def test_week_report_names_tasks_picks_one_meeting_and_groups_sentiment() -> None:
    from services.nlp.demo import render, week_report

    def env(payload: object, tenant: str = "tenant-a") -> e.Envelope:
        return new_envelope(tenant, payload, producer="sim")  # type: ignore[arg-type]

    events = [env(e.ProjectCreated(project_id="p-1", name="Storage")),
              env(e.TaskCreated(task_id="t-1", project_id="p-1", title="NameNode crash")),
              env(e.TaskCreated(task_id="t-4", project_id="p-1", title="Namenode crashes at restart")),
              env(e.MeetingTranscript(meeting_id="m-2", project_id="p-1", title="Storage sync"))]
    dup = env(e.NlpPrediction(kind="duplicates", subject_id="t-4", project_id="p-1",
                              duplicates=[e.ScoredItem(item_id="t-1", score=0.9, label="NameNode crash")]))
    preds = [dup, dup,
             env(e.NlpPrediction(kind="summary", subject_id="m-1", project_id="p-1", summary="Short.")),
             env(e.NlpPrediction(kind="summary", subject_id="m-2", project_id="p-1", summary="We agreed.",
                                 action_items=["Ada: fix login (due 2026-01-09)", "Bo: write the runbook"])),
             env(e.NlpPrediction(kind="sentiment", subject_id="c-1", project_id="p-1", sentiment="negative")),
             env(e.NlpPrediction(kind="sentiment", subject_id="c-2", project_id="p-1", sentiment="negative"))]
    report = week_report(preds, events)
    assert report["duplicates"] == [{"tenant_id": "tenant-a", "task_id": "t-4", "title": "Namenode crashes at restart",
                                     "duplicate_of": "t-1", "duplicate_title": "NameNode crash", "project_id": "p-1",
                                     "score": 0.9}]
    assert report["duplicates_found"] == 1 and report["predictions"] == {"duplicates": 1, "summary": 2,
                                                                          "sentiment": 2}
    meeting = report["meeting"]
    assert meeting["meeting_id"] == "m-2" and meeting["title"] == "Storage sync" and len(meeting["action_items"]) == 2
    assert report["sentiment_per_project"] == {"p-1": {"name": "Storage", "comments": 2, "negative": 2, "neutral": 0,
                                                       "positive": 0, "mean_score": -1.0}}
    text = "\n".join(render(report))
    assert "Namenode crashes at restart" in text and "action: Bo: write the runbook" in text and "-1.00" in text
    empty = week_report([])
    assert empty["meeting"] is None and empty["duplicates"] == [] and "none" in render(empty)[0]
