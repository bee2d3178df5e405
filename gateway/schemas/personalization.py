"""GET /v1/personalization/recommendations: the response and its protobuf conversion."""

from __future__ import annotations

from pydantic import BaseModel, Field
from sunday.ml.v1 import personalization_pb2

from gateway.schemas.common import Provenance, provenance

MAX_K = 50
DEFAULT_K = 5
SURFACE = r"^[a-z0-9_]{1,64}$"


class RecommendedItem(BaseModel):
    item_id: str = Field(description="a task id of the caller's tenant that the person can see")
    score: float


class Recommendations(BaseModel):
    suggestion_id: str = Field(description="the id a feedback event on these items names")
    user_id: str
    surface: str
    policy: str
    policy_version: str
    items: list[RecommendedItem] = Field(description="in slot order")
    provenance: Provenance

    @classmethod
    def from_proto(cls, response: personalization_pb2.RecommendResponse) -> Recommendations:
        p = response.prediction
        return cls(suggestion_id=response.suggestion_id, user_id=p.user_id, surface=p.surface, policy=p.policy,
                   policy_version=p.policy_version, provenance=provenance(p.provenance),
                   items=[RecommendedItem(item_id=i.item_id, score=i.score) for i in p.items])
