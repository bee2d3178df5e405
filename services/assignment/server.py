"""gRPC adapter: RankAssignees request -> the ranker -> response. Errors are domain errors; the mesh's
interceptor maps them to status codes (NotFound -> NOT_FOUND)."""

from __future__ import annotations

import asyncio

import grpc.aio
from sunday.ml.v1 import assignment_pb2, assignment_pb2_grpc

from mesh.errors import InvalidArgument
from mesh.serving import ServiceBinding, bind
from mesh.telemetry import current_trace_id
from services.assignment.features import TaskFeatures
from services.assignment.ranker import AssignmentRanker, task_from_payload

SERVICE_NAME = "sunday.ml.v1.AssignmentService"


class AssignmentServicer(assignment_pb2_grpc.AssignmentServiceServicer):
    def __init__(self, ranker: AssignmentRanker) -> None:
        self._ranker = ranker

    async def RankAssignees(
        self, request: assignment_pb2.RankAssigneesRequest, context: grpc.aio.ServicerContext[
            assignment_pb2.RankAssigneesRequest, assignment_pb2.RankAssigneesResponse],
    ) -> assignment_pb2.RankAssigneesResponse:
        which = request.WhichOneof("task")
        if which is None:
            raise InvalidArgument("set task_id or payload")
        task: TaskFeatures | str = request.task_id if which == "task_id" else task_from_payload(request.payload)
        # feature reads and the ONNX run block: off the event loop (the context, with the span, goes along)
        prediction = await asyncio.to_thread(self._ranker.rank_assignees, request.tenant_id, task,
                                             list(request.candidate_ids), int(request.k), current_trace_id() or None)
        return assignment_pb2.RankAssigneesResponse(prediction=prediction)


def binding(ranker: AssignmentRanker) -> ServiceBinding:
    return bind(SERVICE_NAME, assignment_pb2_grpc.add_AssignmentServiceServicer_to_server, AssignmentServicer(ranker))
