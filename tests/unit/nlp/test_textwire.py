"""The text models wired into the handler: a comment gets a sentiment prediction (with its task and
project), a meeting transcript a summary whose action items are linked to the project's matching task;
redelivery re-publishes the same ids. A tiny TF-IDF sentiment head is trained here (seconds) through the
text half's own fit/export."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sunday.ml.v1 import events_pb2 as e

from mesh.bus import InMemoryBroker, Publisher
from mesh.config import MeshSettings
from mesh.events import Envelope, TopicRegistry, decode, new_envelope
from mesh.models import OnnxModel, StaticModel, VersionedModel
from services.nlp.handlers import MeetingsOnly, NlpHandler
from services.nlp.text import MODEL_NAME
from services.nlp.textwire import TextModels
from tests.unit.nlp.helpers import Service, embedder, service

REGISTRY = TopicRegistry()
A = "tenant-a"
COMMENTS = [("This keeps failing, very frustrating and broken", 0), ("Thanks, great work, this is perfect", 2),
            ("The build is broken again, terrible", 0), ("Love it, works great now", 2),
            ("Moved to the next sprint", 1), ("Updated the ticket description", 1)] * 4


@functools.cache
def sentiment_model() -> StaticModel:
    from services.nlp.text._sentiment_fit import Candidate, export_head, fit

    texts = [t for t, _ in COMMENTS]
    fitted = fit(Candidate("tfidf", 3.0), texts, None, np.asarray([y for _, y in COMMENTS]))
    path = export_head(fitted, Path(tempfile.mkdtemp(prefix="nlp-sentiment-")) / "sentiment.onnx")
    return StaticModel(VersionedModel(MODEL_NAME, "1", OnnxModel.load(path, MeshSettings().models)))


@pytest.fixture
def svc() -> Iterator[Service]:
    s = service()
    yield s
    s.index.drop()


def predictions(broker: InMemoryBroker) -> list[Envelope]:
    return [decode(m.value) for m in broker.messages(REGISTRY.physical("predictions.nlp"))]


def test_comments_get_sentiment_and_meetings_a_summary_with_linked_action_items(svc: Service) -> None:
    broker = InMemoryBroker()
    text = TextModels(sentiment_model(), embedder(), svc.searcher)
    handler = NlpHandler(svc.index, svc.searcher, Publisher(broker.producer(), REGISTRY), text)
    task = new_envelope(A, e.TaskCreated(task_id="t-1", project_id="p-1", title="Fix the login bug on SSO",
                                         description="Users are logged out after five minutes."), producer="t")
    comment = new_envelope(A, e.TaskCommented(task_id="t-1", project_id="p-1", comment_id="c-1", author_id="u",
                                              text="This keeps failing, very frustrating"), producer="t")
    meeting = new_envelope(A, e.MeetingTranscript(meeting_id="m-1", project_id="p-1", title="Sprint planning",
                                                  utterances=[e.Utterance(speaker="Ada", text="I will fix the login "
                                                                          "bug on SSO by Friday."),
                                                              e.Utterance(speaker="Bo", text="Sounds good.")]),
                           producer="t")
    handler([task, comment, meeting])
    out = {p.nlp_prediction.kind: p for p in predictions(broker)}
    sentiment = out["sentiment"].nlp_prediction
    assert (sentiment.subject_id, sentiment.task_id, sentiment.project_id) == ("c-1", "t-1", "p-1")
    assert sentiment.sentiment == "negative" and sentiment.provenance.model_name == MODEL_NAME
    summary = out["summary"].nlp_prediction
    assert summary.subject_id == "m-1" and summary.summary
    assert len(summary.action_items) == 1 and summary.action_items[0].endswith("[task t-1]")
    assert "Ada" in summary.action_items[0]

    handler([comment, meeting])  # redelivered: the same ids
    again = predictions(broker)[-2:]
    assert {p.event_id for p in again} == {out["sentiment"].event_id, out["summary"].event_id}

    quiet = InMemoryBroker()
    NlpHandler(svc.index, svc.searcher, Publisher(quiet.producer(), REGISTRY), MeetingsOnly(text))([comment])
    assert predictions(quiet) == []  # sentiment switched off: the comment is only indexed
