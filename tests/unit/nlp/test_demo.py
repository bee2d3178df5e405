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
