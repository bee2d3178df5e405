"""Template matching: structural alone (nlp unreachable, with a WARNING that says so), and structural +
semantic with an embedder — the nlp service's gRPC Embed through its own client (a real gRPC server here
that answers like nlp, with keyword vectors)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest
from sunday.ml.v1 import nlp_pb2, nlp_pb2_grpc

from services.automation.templates import LIBRARY, NlpEmbedder, describe, match

STEPS = ("move_item:board=archive", "notify:user=owner")


def test_structural_match_picks_the_template_of_the_same_trigger_and_actions() -> None:
    found = match("task_status_changed", "to_status=TASK_STATUS_DONE", STEPS)
    assert found.template is not None and found.template.template_id == "done-archive-notify"
    assert found.semantic is None and found.score == found.structural
    assert match("task_assigned", "assignee_id=self", ("share:report=x",)).template is None  # nothing close


def test_an_unreachable_nlp_service_leaves_the_structural_match() -> None:
    embedder = NlpEmbedder("127.0.0.1:1", timeout_s=0.5)
    assert embedder.embed(["x"]) is None
    found = match("task_status_changed", "to_status=TASK_STATUS_DONE", STEPS, embedder)
    assert found.template is not None and found.template.template_id == "done-archive-notify" and found.semantic is None


class _Keyword:
    """A stand-in embedder: one dimension per template id word found in the text (normalised)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray[Any, Any]:
        words = ("archive", "release", "report", "triage", "checklist", "estimate", "board", "owner")
        rows = np.asarray([[float(w in t.lower()) for w in words] + [0.1] for t in texts])
        return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True))


def test_semantic_similarity_breaks_a_structural_tie() -> None:
    steps = ("share:report=weekly-status", "notify:channel=#releases")
    found = match("task_status_changed", "to_status=TASK_STATUS_DONE", steps, _Keyword())
    assert found.semantic is not None and found.template is not None
    assert found.template.template_id == "done-share-report"
    assert "status becomes Done" in describe("task_status_changed", "to_status=TASK_STATUS_DONE", steps)
    assert len({t.template_id for t in LIBRARY}) == len(LIBRARY)


class _FakeNlp(nlp_pb2_grpc.NlpServiceServicer):
    """Answers Embed like the nlp service (one unit vector per text, in order), with keyword vectors."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def Embed(self, request: nlp_pb2.EmbedRequest, context: grpc.ServicerContext) -> nlp_pb2.EmbedResponse:
        self.calls.append(list(request.texts))
        rows = _Keyword().embed(list(request.texts))
        return nlp_pb2.EmbedResponse(embeddings=[nlp_pb2.Embedding(values=list(r)) for r in rows], dim=rows.shape[1])


class _Server:
    def __init__(self) -> None:
        self.nlp = _FakeNlp()  # type: ignore[abstract]  # only Embed is answered
        self.port = 0
        self._server: grpc.Server | None = None

    def start(self) -> None:
        self._server = grpc.server(futures.ThreadPoolExecutor(2))
        nlp_pb2_grpc.add_NlpServiceServicer_to_server(self.nlp, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(None).wait()
            self._server = None


@pytest.fixture
def nlp_server() -> Iterator[_Server]:
    server = _Server()
    server.start()
    yield server
    server.stop()


def test_the_nlp_services_embed_gives_the_semantic_part_and_template_texts_are_embedded_once(
        nlp_server: _Server) -> None:
    embedder = NlpEmbedder(f"127.0.0.1:{nlp_server.port}", timeout_s=5)
    steps = ("share:report=weekly-status", "notify:channel=#releases")
    found = match("task_status_changed", "to_status=TASK_STATUS_DONE", steps, embedder)
    assert embedder.reachable is True and found.semantic is not None and found.semantic > 0
    assert found.template is not None and found.template.template_id == "done-share-report"
    match("task_created", "task_type=bug", ("move_item:board=triage",), embedder)
    assert len(nlp_server.nlp.calls) == 2
    assert nlp_server.nlp.calls[1] == [describe("task_created", "task_type=bug", ("move_item:board=triage",))]


def test_nlp_going_away_warns_once_falls_back_to_structure_and_recovery_is_logged(
        nlp_server: _Server, caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    embedder = NlpEmbedder(f"127.0.0.1:{nlp_server.port}", timeout_s=2, retry_after_s=60, clock=lambda: now[0])
    assert embedder.embed(["a report"]) is not None
    nlp_server.stop()
    caplog.set_level(logging.WARNING, logger="services.automation.templates")
    found = match("task_status_changed", "to_status=TASK_STATUS_DONE", STEPS, embedder)
    assert found.semantic is None and found.template is not None
    assert found.template.template_id == "done-archive-notify"  # the structural match
    now[0] = 30.0
    assert embedder.embed(["another text"]) is None  # inside the retry window: no call, no second warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "unreachable" in warnings[0] and "structural only" in warnings[0]
    nlp_server.start()  # same port
    back = None
    for attempt in range(5):  # one try per retry window; a loaded machine may need more than the first
        now[0] = 61.0 * (attempt + 1)
        back = embedder.embed(["another text"])
        if back is not None:
            break
    assert back is not None and embedder.reachable is True
    assert "answers again" in caplog.records[-1].getMessage()
