"""Timeline responses and their protobuf conversions."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sunday.ml.v1 import events_pb2, timeline_pb2

from gateway.schemas.common import Provenance, provenance, timestamp

EntityKind = Literal["unspecified", "task", "project", "milestone"]
_KINDS: dict[int, EntityKind] = {events_pb2.ENTITY_KIND_TASK: "task", events_pb2.ENTITY_KIND_PROJECT: "project",
                                 events_pb2.ENTITY_KIND_MILESTONE: "milestone"}


class TimelinePrediction(BaseModel):
    entity_kind: EntityKind
    entity_id: str
    project_id: str
    remaining_hours_p10: float
    remaining_hours_p50: float
    remaining_hours_p90: float
    completion_p10: datetime | None = None
    completion_p50: datetime | None = None
    completion_p90: datetime | None = None
    deadline_miss_probability: float = Field(ge=0, le=1)
    provenance: Provenance

    @classmethod
    def from_proto(cls, p: events_pb2.TimelinePrediction) -> TimelinePrediction:
        return cls(entity_kind=_KINDS.get(p.entity_kind, "unspecified"), entity_id=p.entity_id,
                   project_id=p.project_id, remaining_hours_p10=p.remaining_hours_p10,
                   remaining_hours_p50=p.remaining_hours_p50, remaining_hours_p90=p.remaining_hours_p90,
                   completion_p10=timestamp(p.completion_p10), completion_p50=timestamp(p.completion_p50),
                   completion_p90=timestamp(p.completion_p90),
                   deadline_miss_probability=min(1.0, max(0.0, p.deadline_miss_probability)),
                   provenance=provenance(p.provenance))


class ProjectTimeline(BaseModel):
    project: TimelinePrediction
    milestones: list[TimelinePrediction]

    @classmethod
    def from_proto(cls, response: timeline_pb2.PredictProjectResponse) -> ProjectTimeline:
        return cls(project=TimelinePrediction.from_proto(response.project),
                   milestones=[TimelinePrediction.from_proto(m) for m in response.milestones])
