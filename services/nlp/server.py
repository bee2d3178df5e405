"""gRPC adapter: nlp.proto requests -> the searcher, the embedder and the text models -> responses.

Thin: blocking work (model runs, vector database calls) goes off the event loop; errors are domain errors
that the mesh's interceptor maps to status codes (InvalidArgument -> INVALID_ARGUMENT, NotFound ->
NOT_FOUND, Unavailable -> UNAVAILABLE while no embedder champion is loaded)."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, TypeAlias

import grpc.aio
from sunday.ml.v1 import nlp_pb2, nlp_pb2_grpc

from mesh.errors import InvalidArgument, Unavailable
from mesh.models import VersionedModel, build_provenance
from mesh.serving import ServiceBinding, bind
from mesh.telemetry import current_trace_id
from services.nlp.embedder import DIM, Embedder, check_texts
from services.nlp.search import HybridSearcher, Scored
from services.nlp.vectors import checked_id

SERVICE_NAME = "sunday.ml.v1.NlpService"
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


class TextService(Protocol):
    """The text models' RPCs (sentiment, summaries, effort, drafts), implemented beside the search."""

    async def Sentiment(self, request: nlp_pb2.SentimentRequest, context: Context) -> nlp_pb2.SentimentResponse: ...

    async def Summarize(self, request: nlp_pb2.SummarizeRequest, context: Context) -> nlp_pb2.SummarizeResponse: ...

    async def EstimateEffort(self, request: nlp_pb2.EstimateEffortRequest, context: Context
                             ) -> nlp_pb2.EstimateEffortResponse: ...

    async def DraftDescription(self, request: nlp_pb2.DraftDescriptionRequest, context: Context
                               ) -> nlp_pb2.DraftDescriptionResponse: ...


def _provenance(model: VersionedModel) -> Any:
    return build_provenance(model.name, model.version, trace_id=current_trace_id() or None)


def _hits(scored: list[Scored]) -> list[nlp_pb2.SearchHit]:
    return [nlp_pb2.SearchHit(item_id=s.item.item_id, kind=s.item.kind, project_id=s.item.project_id,
                              title=s.item.title, score=s.score, dense_score=s.dense, lexical_score=s.lexical)
            for s in scored]


class NlpServicer(nlp_pb2_grpc.NlpServiceServicer):
    def __init__(self, searcher: HybridSearcher, embedder: Embedder, text: TextService | None = None) -> None:
        self._searcher = searcher
        self._embedder = embedder
        self._text = text

    async def Search(self, request: nlp_pb2.SearchRequest, context: Context) -> nlp_pb2.SearchResponse:
        checked_id(request.tenant_id, "tenant_id")
        hits, model = await asyncio.to_thread(self._searcher.search, request.tenant_id, request.query,
                                              int(request.k), dict(request.filters))
        return nlp_pb2.SearchResponse(hits=_hits(hits), provenance=_provenance(model))

    async def SimilarTasks(self, request: nlp_pb2.SimilarTasksRequest, context: Context) -> nlp_pb2.SearchResponse:
        checked_id(request.tenant_id, "tenant_id")
        hits, model = await asyncio.to_thread(self._searcher.similar, request.tenant_id, request.task_id,
                                              int(request.k))
        return nlp_pb2.SearchResponse(hits=_hits(hits), provenance=_provenance(model))

    async def Embed(self, request: nlp_pb2.EmbedRequest, context: Context) -> nlp_pb2.EmbedResponse:
        texts = list(request.texts)
        check_texts(texts)
        embedded = await asyncio.to_thread(self._embedder.embed, texts)
        return nlp_pb2.EmbedResponse(embeddings=[nlp_pb2.Embedding(values=v.tolist()) for v in embedded.vectors],
                                     dim=DIM, provenance=_provenance(embedded.model))

    def _text_service(self) -> TextService:
        if self._text is None:
            raise Unavailable("the nlp text models are not loaded in this service")
        return self._text

    async def Sentiment(self, request: nlp_pb2.SentimentRequest, context: Context) -> nlp_pb2.SentimentResponse:
        return await self._text_service().Sentiment(request, context)

    async def Summarize(self, request: nlp_pb2.SummarizeRequest, context: Context) -> nlp_pb2.SummarizeResponse:
        return await self._text_service().Summarize(request, context)

    async def EstimateEffort(self, request: nlp_pb2.EstimateEffortRequest, context: Context
                             ) -> nlp_pb2.EstimateEffortResponse:
        return await self._text_service().EstimateEffort(request, context)

    async def DraftDescription(self, request: nlp_pb2.DraftDescriptionRequest, context: Context
                               ) -> nlp_pb2.DraftDescriptionResponse:
        if not request.title.strip():
            raise InvalidArgument("title is empty")
        return await self._text_service().DraftDescription(request, context)


def binding(searcher: HybridSearcher, embedder: Embedder, text: TextService | None = None) -> ServiceBinding:
    return bind(SERVICE_NAME, nlp_pb2_grpc.add_NlpServiceServicer_to_server, NlpServicer(searcher, embedder, text))
