"""gRPC adapter: RankAssignees request -> the ranker -> response. Errors are domain errors; the mesh's
interceptor maps them to status codes (NotFound -> NOT_FOUND).

Calls that arrive together are ranked together: each call is submitted to a :class:`mesh.models.Coalescer`
that hands whatever has queued to one :meth:`AssignmentRanker.rank_batch` (one read of the union of the
candidates, one model run) off the event loop; an idle service adds no wait (``max_wait_ms`` 0), a busy
one batches the calls that queued while the previous batch ran."""

from __future__ import annotations

import grpc.aio
from sunday.ml.v1 import assignment_pb2, assignment_pb2_grpc

from mesh.errors import InvalidArgument
from mesh.models import Coalescer
from mesh.serving import ServiceBinding, bind
from mesh.telemetry import current_trace_id
from services.assignment.features import TaskFeatures
from services.assignment.ranker import AssignmentRanker, Ranked, RankRequest, task_from_payload

SERVICE_NAME = "sunday.ml.v1.AssignmentService"
MAX_BATCH = 64
"""Calls ranked in one batch at most."""


class AssignmentServicer(assignment_pb2_grpc.AssignmentServiceServicer):
    def __init__(self, ranker: AssignmentRanker, *, max_batch: int = MAX_BATCH, max_wait_ms: float = 0.0) -> None:
        self._batcher: Coalescer[RankRequest, Ranked] = Coalescer(ranker.rank_batch, max_batch, max_wait_ms)

    @property
    def batches_run(self) -> int:
        """Batches ranked so far (each one ``rank_batch`` call)."""
        return self._batcher.batches_run

    async def RankAssignees(
        self, request: assignment_pb2.RankAssigneesRequest, context: grpc.aio.ServicerContext[
            assignment_pb2.RankAssigneesRequest, assignment_pb2.RankAssigneesResponse],
    ) -> assignment_pb2.RankAssigneesResponse:
        which = request.WhichOneof("task")
        if which is None:
            raise InvalidArgument("set task_id or payload")
        task: TaskFeatures | str = request.task_id if which == "task_id" else task_from_payload(request.payload)
        outcome = await self._batcher.submit(RankRequest(request.tenant_id, task, tuple(request.candidate_ids),
                                                         int(request.k), current_trace_id() or None))
        if isinstance(outcome, Exception):
            raise outcome
        return assignment_pb2.RankAssigneesResponse(prediction=outcome)


def binding(ranker: AssignmentRanker, *, max_batch: int = MAX_BATCH, max_wait_ms: float = 0.0) -> ServiceBinding:
    servicer = AssignmentServicer(ranker, max_batch=max_batch, max_wait_ms=max_wait_ms)
    return bind(SERVICE_NAME, assignment_pb2_grpc.add_AssignmentServiceServicer_to_server, servicer)
