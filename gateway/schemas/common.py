"""Values shared by several resources, and the protobuf -> API conversions they need."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sunday.ml.v1 import common_pb2

Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:\-]{1,128}$")]


class Strict(BaseModel):
    """Requests reject unknown fields: a `tenant_id` in a body is an error, never a hint."""

    model_config = ConfigDict(extra="forbid")


class Provenance(BaseModel):
    model_name: str
    model_version: str
    trace_id: str = Field(description="W3C trace id of the request or event that caused the prediction")
    predicted_at: datetime | None = None
    feature_timestamps: dict[str, datetime] = Field(default_factory=dict)


class Reason(BaseModel):
    feature: str
    contribution: float
    description: str


def timestamp(ts: Timestamp) -> datetime | None:
    return ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None


def provenance(p: common_pb2.Provenance) -> Provenance:
    stamps = {k: v for k, v in ((k, timestamp(t)) for k, t in p.feature_timestamps.items()) if v is not None}
    return Provenance(model_name=p.model_name, model_version=p.model_version, trace_id=p.trace_id,
                      predicted_at=timestamp(p.predicted_at), feature_timestamps=stamps)


def provenance_dict(p: common_pb2.Provenance) -> dict[str, object]:
    """:func:`provenance` as the plain dict its model dumps to (for responses serialised without models)."""
    stamps = {k: v for k, v in ((k, timestamp(t)) for k, t in p.feature_timestamps.items()) if v is not None}
    return {"model_name": p.model_name, "model_version": p.model_version, "trace_id": p.trace_id,
            "predicted_at": timestamp(p.predicted_at), "feature_timestamps": stamps}


def reason(r: common_pb2.Reason) -> Reason:
    return Reason(feature=r.feature, contribution=r.contribution, description=r.description)
