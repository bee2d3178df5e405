"""The text models (:mod:`services.nlp.text`) wired into the service: the handler's
:class:`~services.nlp.handlers.TextPredictions` and the text RPCs of :class:`~services.nlp.server.TextService`.

- comments -> sentiment: the registered ``nlp-sentiment`` champion (a ``ReloadingModel``; Unavailable,
  so the batch is retried and held, until one is registered) fed by the service's own ONNX embedder;
- meeting transcripts -> summary + action items, locally and deterministically (a replay publishes the same
  text under the same event id); each action item is linked to the meeting project's best-matching task
  when the match is close enough (cosine of the embeddings >= :data:`LINK_MIN_COSINE`);
- ``Summarize`` / ``DraftDescription`` on request: through the LLM pipeline (PII masking, cache, per-tenant
  budget and rate limits, fallback to the local provider; local only when no provider is configured);
  drafts get their context from the project's similar tasks (the hybrid search);
- ``EstimateEffort``: the story-point model of :mod:`services.nlp.effort_train` (TF-IDF, no embedder), loaded
  from its file at start; Unavailable, naming the training command, while there is none.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sunday.ml.v1 import events_pb2, nlp_pb2

from mesh.errors import InvalidArgument, Unavailable
from mesh.events import Envelope, occurred_at
from mesh.models import ModelSource, VersionedModel, build_provenance
from mesh.telemetry import current_trace_id
from services.nlp.effort_train import TRAIN_COMMAND as EFFORT_TRAIN_COMMAND
from services.nlp.effort_train import EffortEstimator
from services.nlp.embedder import Embedder, check_texts
from services.nlp.search import Calibration, HybridSearcher, Scored
from services.nlp.text import (
    ActionItem,
    DraftContext,
    LLMPipeline,
    SentimentModel,
    SummaryContext,
    extract_action_items,
    load_template,
    summarize_meeting,
)

log = logging.getLogger(__name__)
SUMMARIZER = "nlp-local-summarizer"
"""Provenance name of the local (extractive) meeting summaries."""
SUMMARIZER_VERSION = "1"
LINK_MIN_COSINE = 0.5
MAX_EFFORT_CHARS = 100_000
Prediction = tuple[Envelope, events_pb2.NlpPrediction]


def _provenance(name: str, version: str) -> Any:
    return build_provenance(name, version, trace_id=current_trace_id() or None)


def action_text(item: ActionItem, linked: str) -> str:
    """One action item as a line: "owner: what (due ...) [task id]"."""
    owner = f"{item.owner_name}: " if item.owner_name else ""
    due = f" (due {item.due.isoformat() if item.due else item.due_text})" if item.due_text else ""
    return f"{owner}{item.text}{due}" + (f" [task {linked}]" if linked else "")


class TextModels:
    """Sentiment and meeting summaries for the handler; the sentiment head per loaded version."""

    def __init__(self, sentiment: ModelSource, embedder: Embedder, searcher: HybridSearcher) -> None:
        self._sentiment = sentiment
        self._embedder = embedder
        self._searcher = searcher
        self._heads: dict[tuple[str, str], SentimentModel] = {}

    def _head(self) -> tuple[SentimentModel, VersionedModel]:
        version = self._sentiment.current  # Unavailable while none is registered
        key = (version.name, version.version)
        if key not in self._heads:
            self._heads = {key: SentimentModel(version.model, self._embed)}
        return self._heads[key], version

    def _embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self._embedder.embed(texts).vectors

    def sentiments(self, texts: Sequence[str]) -> tuple[list[Any], VersionedModel]:
        head, version = self._head()
        return head.predict_many(texts), version

    def comment_predictions(self, events: Sequence[Envelope]) -> list[Prediction]:
        if not events:
            return []
        scored, version = self.sentiments([e.task_commented.text for e in events])
        return [(env, events_pb2.NlpPrediction(
            kind="sentiment", subject_id=env.task_commented.comment_id, sentiment=s.label,
            sentiment_score=s.score, project_id=env.task_commented.project_id, task_id=env.task_commented.task_id,
            provenance=_provenance(version.name, version.version))) for env, s in zip(events, scored, strict=True)]

    def meeting_predictions(self, events: Sequence[Envelope]) -> list[Prediction]:
        return [(env, self._summary(env)) for env in events]

    def _summary(self, env: Envelope) -> events_pb2.NlpPrediction:
        m = env.meeting_transcript
        lines = [(u.speaker, u.text) for u in m.utterances]
        result = summarize_meeting(lines, [], occurred_at(env))
        items = [action_text(i, self.linked_task(env.tenant_id, m.project_id, i.text)) for i in result.action_items]
        return events_pb2.NlpPrediction(kind="summary", subject_id=m.meeting_id, summary=result.summary,
                                        action_items=items, project_id=m.project_id,
                                        provenance=_provenance(SUMMARIZER, SUMMARIZER_VERSION))

    def linked_task(self, tenant_id: str, project_id: str, text: str) -> str:
        """The project's task the action item talks about, or "" (none close enough, no project)."""
        if not project_id or not text.strip():
            return ""
        embedded = self._embedder.embed([text])
        filters = {"project_id": project_id}
        hits: list[Scored] = self._searcher.rank(tenant_id, text, embedded.vectors[0], 1, filters,
                                                 Calibration.of(embedded.model))
        return hits[0].item.item_id if hits and hits[0].dense >= LINK_MIN_COSINE else ""


class TextServicer:
    """The text RPCs (see :class:`services.nlp.server.TextService`)."""

    def __init__(self, models: TextModels, pipeline: LLMPipeline, searcher: HybridSearcher,
                 effort: EffortEstimator | None = None) -> None:
        self._models = models
        self._pipeline = pipeline
        self._searcher = searcher
        self._effort = effort

    async def Sentiment(self, request: nlp_pb2.SentimentRequest, context: Any) -> nlp_pb2.SentimentResponse:
        texts = list(request.texts)
        check_texts(texts)
        scored, version = await asyncio.to_thread(self._models.sentiments, texts)
        return nlp_pb2.SentimentResponse(
            results=[nlp_pb2.SentimentResult(label=s.label, score=s.confidence) for s in scored],
            provenance=_provenance(version.name, version.version))

    async def Summarize(self, request: nlp_pb2.SummarizeRequest, context: Any) -> nlp_pb2.SummarizeResponse:
        if not request.utterances:
            raise InvalidArgument("give the transcript's utterances")
        lines = [(u.speaker, u.text) for u in request.utterances]
        transcript = tuple(f"{s}: {t}" for s, t in lines)
        speakers = tuple(sorted({s for s, _ in lines if s}))
        generated = await self._pipeline.generate(request.tenant_id, load_template("meeting_summary"),
                                                  SummaryContext(request.title, transcript), speakers)
        items = extract_action_items(lines, [], datetime.now().astimezone())
        links = [await asyncio.to_thread(self._models.linked_task, request.tenant_id, request.project_id, i.text)
                 for i in items]
        return nlp_pb2.SummarizeResponse(
            summary=generated.text, provider=generated.source,
            action_items=[nlp_pb2.ActionItem(text=i.text, owner=i.owner_name,
                                             due=i.due.isoformat() if i.due else i.due_text, linked_task_id=link)
                          for i, link in zip(items, links, strict=True)],
            provenance=_provenance(generated.template, SUMMARIZER_VERSION))

    async def EstimateEffort(self, request: nlp_pb2.EstimateEffortRequest, context: Any
                             ) -> nlp_pb2.EstimateEffortResponse:
        if self._effort is None:
            raise Unavailable(f"no effort model is loaded: run `{EFFORT_TRAIN_COMMAND}` and restart the nlp service")
        if not (request.title.strip() or request.description.strip()):
            raise InvalidArgument("give the task's title or description")
        if len(request.title) + len(request.description) > MAX_EFFORT_CHARS:
            raise InvalidArgument(f"title + description longer than {MAX_EFFORT_CHARS} characters")
        effort = self._effort
        points = await asyncio.to_thread(effort.estimate, request.title, request.description)
        return nlp_pb2.EstimateEffortResponse(story_points=points,
                                              provenance=_provenance(effort.name, effort.version))

    async def DraftDescription(self, request: nlp_pb2.DraftDescriptionRequest, context: Any
                               ) -> nlp_pb2.DraftDescriptionResponse:
        filters = {"project_id": request.project_id} if request.project_id else None
        hits, _ = await asyncio.to_thread(self._searcher.search, request.tenant_id, request.title, 5, filters)
        generated = await self._pipeline.generate(
            request.tenant_id, load_template("task_description_draft"),
            DraftContext(request.title, request.project_id, tuple(h.item.full_text for h in hits)))
        return nlp_pb2.DraftDescriptionResponse(description=generated.text,
                                                similar_task_ids=[h.item.item_id for h in hits],
                                                provider=generated.source,
                                                provenance=_provenance(generated.template, SUMMARIZER_VERSION))
