"""gRPC adapter: Recommend request -> the recommender -> response; the recommendation is published as a
``personalization_prediction`` event. Errors are domain errors (the mesh's interceptor maps them)."""

from __future__ import annotations

import asyncio

import grpc.aio
from sunday.ml.v1 import personalization_pb2, personalization_pb2_grpc

from mesh.bus import Publisher
from mesh.serving import ServiceBinding, bind
from services.personalization.recommend import Recommendation, Recommender, RecommendRequest

SERVICE_NAME = "sunday.ml.v1.PersonalizationService"
DEFAULT_K = 5


class PersonalizationServicer(personalization_pb2_grpc.PersonalizationServiceServicer):
    def __init__(self, recommender: Recommender, publisher: Publisher | None) -> None:
        self._recommender = recommender
        self._publisher = publisher

    def _recommend(self, req: RecommendRequest) -> Recommendation:
        out = self._recommender.recommend(req)
        if self._publisher is not None:
            self._publisher.publish(out.envelope)
        return out

    async def Recommend(
        self, request: personalization_pb2.RecommendRequest, context: grpc.aio.ServicerContext[
            personalization_pb2.RecommendRequest, personalization_pb2.RecommendResponse],
    ) -> personalization_pb2.RecommendResponse:
        req = RecommendRequest(request.tenant_id, request.user_id, int(request.k) or DEFAULT_K,
                               request.surface or "for_you", request.request_id, request.include_closed)
        out = await asyncio.to_thread(self._recommend, req)
        return personalization_pb2.RecommendResponse(suggestion_id=out.envelope.event_id, prediction=out.prediction)


def binding(recommender: Recommender, publisher: Publisher | None = None) -> ServiceBinding:
    servicer = PersonalizationServicer(recommender, publisher)
    return bind(SERVICE_NAME, personalization_pb2_grpc.add_PersonalizationServiceServicer_to_server, servicer)
