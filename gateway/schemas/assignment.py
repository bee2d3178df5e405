"""POST /v1/assignment/rank: request, response, and their protobuf conversions."""

from __future__ import annotations

from typing import Any, Literal, Self

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sunday.ml.v1 import assignment_pb2, events_pb2

from gateway.schemas.common import Id, Provenance, Reason, Strict, provenance, provenance_dict, reason

PriorityName = Literal["low", "medium", "high", "critical"]
_PRIORITY = {"low": events_pb2.PRIORITY_LOW, "medium": events_pb2.PRIORITY_MEDIUM,
             "high": events_pb2.PRIORITY_HIGH, "critical": events_pb2.PRIORITY_CRITICAL}


class TaskIn(Strict):
    """A task not (yet) known to the service, ranked from its content."""

    task_id: Id
    project_id: Id | None = None
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=20_000)
    task_type: str = Field(default="", max_length=64)
    priority: PriorityName | None = None
    required_skills: list[str] = Field(default_factory=list, max_length=50)
    estimate_hours: float = Field(default=0.0, ge=0, le=10_000)


def _exactly_one_task(schema: dict[str, Any]) -> None:
    """The OpenAPI says what the validator checks: exactly one of the two, neither of them null."""
    props = schema["properties"]
    for name in ("task_id", "task"):
        kinds = props[name].pop("anyOf", None)
        if kinds:  # drop the {"type": "null"} branch; keep description/title
            props[name].update(next(k for k in kinds if k.get("type") != "null"))
        props[name].pop("default", None)
    schema["oneOf"] = [{"required": ["task_id"]}, {"required": ["task"]}]


class RankRequest(Strict):
    """Exactly one of `task_id` (a task the service has seen) and `task`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_exactly_one_task)

    task_id: Id | None = None
    task: TaskIn | None = None
    candidate_ids: list[Id] = Field(default_factory=list, max_length=500,
                                    description="restrict to these people; empty: every active person")
    k: int = Field(default=5, ge=1, le=50, description="how many candidates to return")

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("task_id", "task"):
                if name in data and data[name] is None:
                    raise ValueError(f"{name} may not be null: leave it out")
        return data

    @model_validator(mode="after")
    def _one_task(self) -> Self:
        if (self.task_id is None) == (self.task is None):
            raise ValueError("give exactly one of task_id and task")
        return self

    def to_proto(self, tenant_id: str) -> assignment_pb2.RankAssigneesRequest:
        request = assignment_pb2.RankAssigneesRequest(tenant_id=tenant_id, candidate_ids=self.candidate_ids, k=self.k)
        if self.task_id is not None:
            request.task_id = self.task_id
        elif self.task is not None:
            t = self.task
            priority = _PRIORITY[t.priority] if t.priority else events_pb2.PRIORITY_UNSPECIFIED
            request.payload.CopyFrom(assignment_pb2.TaskPayload(
                task_id=t.task_id, project_id=t.project_id or "", title=t.title, description=t.description,
                task_type=t.task_type, priority=priority,
                required_skills=t.required_skills, estimate_hours=t.estimate_hours))
        return request


class Candidate(BaseModel):
    user_id: str
    score: float
    reasons: list[Reason]


class Ranking(BaseModel):
    task_id: str
    project_id: str
    candidates: list[Candidate]
    provenance: Provenance

    @classmethod
    def from_proto(cls, response: assignment_pb2.RankAssigneesResponse) -> Ranking:
        p = response.prediction
        return cls(task_id=p.task_id, project_id=p.project_id, provenance=provenance(p.provenance),
                   candidates=[Candidate(user_id=c.user_id, score=c.score, reasons=[reason(r) for r in c.reasons])
                               for c in p.candidates])


def ranking_json(response: assignment_pb2.RankAssigneesResponse) -> bytes:
    """The JSON of ``Ranking.from_proto(response)``, byte for byte, without building ~150 pydantic models.

    The hot path of the gateway (``POST /v1/assignment/rank``): plain dicts in :class:`Ranking`'s field order,
    serialised by pydantic's own Rust serialiser (same float and datetime forms). The unit tests hold the
    two equal; :class:`Ranking` stays the documented schema.
    """
    p = response.prediction
    return pydantic_core.to_json({
        "task_id": p.task_id, "project_id": p.project_id,
        "candidates": [{"user_id": c.user_id, "score": c.score,
                        "reasons": [{"feature": r.feature, "contribution": r.contribution, "description": r.description}
                                    for r in c.reasons]} for c in p.candidates],
        "provenance": provenance_dict(p.provenance)})
