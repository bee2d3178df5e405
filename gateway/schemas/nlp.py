"""/v1/nlp: search, similar tasks, sentiment, meeting summaries, description drafts, and their protobuf
conversions. The requests say in their schema exactly what the nlp service accepts (ids it can index,
queries and titles with a visible character), so a request valid here is never refused there."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints
from sunday.ml.v1 import events_pb2, nlp_pb2

from gateway.schemas.common import Provenance, Strict, provenance

NlpId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$")]
"""An id the nlp service indexes: the gateway's ``Id`` starting with a letter or a digit."""
Text = Annotated[str, StringConstraints(max_length=20_000)]
Visible = Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=r"\S")]
"""At least one non-blank character."""

MAX_TEXTS = 256
MAX_K = 100
DEFAULT_K = 10


class SearchIn(Strict):
    """Free-text search over the caller's indexed tasks (or comments)."""

    query: Annotated[str, StringConstraints(min_length=1, max_length=2_000, pattern=r"\S")]
    k: int = Field(default=DEFAULT_K, ge=1, le=MAX_K, description="how many hits to return")
    project_id: NlpId | None = Field(default=None, description="only this project's items")
    kind: Literal["task", "comment"] = Field(default="task", description="what to search")

    def to_proto(self, tenant_id: str) -> nlp_pb2.SearchRequest:
        filters: dict[str, str] = {"kind": self.kind}
        if self.project_id is not None:
            filters["project_id"] = self.project_id
        return nlp_pb2.SearchRequest(tenant_id=tenant_id, query=self.query, k=self.k, filters=filters)


class SearchHit(BaseModel):
    item_id: str = Field(description="task id (comment id for kind comment)")
    kind: str
    project_id: str
    title: str
    score: float = Field(description="fused score, higher is more similar")
    dense_score: float = Field(description="cosine similarity of the embeddings")
    lexical_score: float = Field(description="BM25 score normalised by the query's best")


class SearchResults(BaseModel):
    hits: list[SearchHit]
    provenance: Provenance

    @classmethod
    def from_proto(cls, response: nlp_pb2.SearchResponse) -> SearchResults:
        return cls(hits=[SearchHit(item_id=h.item_id, kind=h.kind, project_id=h.project_id, title=h.title,
                                   score=h.score, dense_score=h.dense_score, lexical_score=h.lexical_score)
                         for h in response.hits],
                   provenance=provenance(response.provenance))


class SentimentIn(Strict):
    texts: list[Text] = Field(min_length=1, max_length=MAX_TEXTS, description="comments or messages, in order")

    def to_proto(self, tenant_id: str) -> nlp_pb2.SentimentRequest:
        return nlp_pb2.SentimentRequest(tenant_id=tenant_id, texts=self.texts)


class SentimentResult(BaseModel):
    label: str = Field(description="negative, neutral or positive")
    score: float = Field(description="probability of the label")


class Sentiments(BaseModel):
    results: list[SentimentResult] = Field(description="one per text, in order")
    provenance: Provenance

    @classmethod
    def from_proto(cls, response: nlp_pb2.SentimentResponse) -> Sentiments:
        return cls(results=[SentimentResult(label=r.label, score=r.score) for r in response.results],
                   provenance=provenance(response.provenance))


class UtteranceIn(Strict):
    speaker: str = Field(default="", max_length=200)
    text: Text
    start_seconds: float = Field(default=0.0, ge=0, le=86_400 * 7)


class SummaryIn(Strict):
    """A meeting transcript to summarise; action items are linked to the project's matching task."""

    title: str = Field(default="", max_length=500)
    project_id: NlpId | None = Field(default=None, description="the meeting's project (links action items)")
    utterances: list[UtteranceIn] = Field(min_length=1, max_length=2_000)

    def to_proto(self, tenant_id: str) -> nlp_pb2.SummarizeRequest:
        return nlp_pb2.SummarizeRequest(
            tenant_id=tenant_id, project_id=self.project_id or "", title=self.title,
            utterances=[events_pb2.Utterance(speaker=u.speaker, text=u.text, start_seconds=u.start_seconds)
                        for u in self.utterances])


class ActionItem(BaseModel):
    text: str
    owner: str = Field(description="a named person, or empty")
    due: str = Field(description="the due date as said (or ISO date), or empty")
    linked_task_id: str = Field(description="the project's task it matches, or empty")


class Summary(BaseModel):
    summary: str
    action_items: list[ActionItem]
    provider: str = Field(description="which LLM path answered: provider, cache or local")
    provenance: Provenance

    @classmethod
    def from_proto(cls, response: nlp_pb2.SummarizeResponse) -> Summary:
        return cls(summary=response.summary, provider=response.provider, provenance=provenance(response.provenance),
                   action_items=[ActionItem(text=i.text, owner=i.owner, due=i.due, linked_task_id=i.linked_task_id)
                                 for i in response.action_items])


class DraftIn(Strict):
    """A task title to draft a description for, from the project's similar tasks."""

    title: Visible
    project_id: NlpId | None = Field(default=None, description="draw context from this project's tasks only")

    def to_proto(self, tenant_id: str) -> nlp_pb2.DraftDescriptionRequest:
        return nlp_pb2.DraftDescriptionRequest(tenant_id=tenant_id, project_id=self.project_id or "",
                                               title=self.title)


class Draft(BaseModel):
    description: str
    similar_task_ids: list[str] = Field(description="the tasks whose text gave the context")
    provider: str = Field(description="which LLM path answered: provider, cache or local")
    provenance: Provenance

    @classmethod
    def from_proto(cls, response: nlp_pb2.DraftDescriptionResponse) -> Draft:
        return cls(description=response.description, similar_task_ids=list(response.similar_task_ids),
                   provider=response.provider, provenance=provenance(response.provenance))
