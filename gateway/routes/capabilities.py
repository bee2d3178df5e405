"""Capability routes over the services' gRPC APIs: thin adapters, the tenant always from the credential."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query
from sunday.ml.v1 import timeline_pb2

from gateway.backends import not_deployed
from gateway.deps import AssignmentCaller, Context, TimelineCaller, scoped
from gateway.problems import PROBLEM_MEDIA_TYPE, PROBLEM_RESPONSES, Problem
from gateway.schemas.assignment import Ranking, RankRequest
from gateway.schemas.common import Id
from gateway.schemas.timeline import ProjectTimeline, TimelinePrediction

_PROBLEM = {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES, 404: {**_PROBLEM, "description": "not found in the caller's tenant"},
    502: {**_PROBLEM, "description": "the service failed"},
    503: {**_PROBLEM, "description": "the service is unreachable; retry after Retry-After"},
}

assignment = APIRouter(prefix="/v1/assignment", tags=["assignment"], responses=RESPONSES)
timeline = APIRouter(prefix="/v1/timeline", tags=["timeline"], responses=RESPONSES)


@assignment.post("/rank", summary="Rank the people of the caller's tenant for a task")
async def rank_assignees(body: RankRequest, caller: AssignmentCaller, ctx: Context) -> Ranking:
    stub = ctx.backends.assignment
    if stub is None:
        raise not_deployed("assignment", ctx.settings.backends.retry_after_s)
    response = await ctx.backends.call("assignment", "task", stub.RankAssignees, body.to_proto(caller.tenant_id))
    return Ranking.from_proto(response)


@timeline.get("/tasks/{task_id}", summary="Remaining duration and completion date of a task")
async def predict_task(task_id: Annotated[Id, Path()], caller: TimelineCaller, ctx: Context) -> TimelinePrediction:
    stub = ctx.backends.timeline
    if stub is None:
        raise not_deployed("timeline", ctx.settings.backends.retry_after_s)
    request = timeline_pb2.PredictTaskRequest(tenant_id=caller.tenant_id, task_id=task_id)
    response = await ctx.backends.call("timeline", "task", stub.PredictTask, request)
    return TimelinePrediction.from_proto(response.prediction)


@timeline.get("/projects/{project_id}", summary="Project and milestone completion (Monte-Carlo)")
async def predict_project(project_id: Annotated[Id, Path()], caller: TimelineCaller, ctx: Context,
                          simulations: Annotated[int, Query(ge=0, le=100_000)] = 0) -> ProjectTimeline:
    stub = ctx.backends.timeline
    if stub is None:
        raise not_deployed("timeline", ctx.settings.backends.retry_after_s)
    request = timeline_pb2.PredictProjectRequest(tenant_id=caller.tenant_id, project_id=project_id,
                                                 simulations=simulations)
    return ProjectTimeline.from_proto(await ctx.backends.call("timeline", "project", stub.PredictProject, request))


def pending_router(capability: str) -> APIRouter:
    """A capability whose service has no gRPC API yet: authenticated, scoped, and 503 until it lands."""
    router = APIRouter(prefix=f"/v1/{capability}", tags=[capability], responses=RESPONSES)

    async def predict(ctx: Context, _body: Annotated[dict[str, Any], Body()]) -> None:
        raise not_deployed(capability, ctx.settings.backends.retry_after_s)

    # The scope check is a route dependency: annotations of this closure cannot name `capability`.
    router.add_api_route("/predict", predict, methods=["POST"], status_code=200, response_model=None,
                         dependencies=[Depends(scoped(f"{capability}:read"))],
                         summary=f"{capability} predictions (503 until the service is reachable)",
                         operation_id=f"predict_{capability}")
    return router
