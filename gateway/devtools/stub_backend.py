"""A small real gRPC server implementing AssignmentService and TimelineService with canned answers.

For the SDK tests, the gateway benchmark and local development, where the real services (and their
models) are not needed: the point is the gateway in front. Tenant-aware like the real ones: a task of
another tenant is NOT_FOUND. Run: ``python -m gateway.devtools.stub_backend --port 50051``.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from sunday.ml.v1 import assignment_pb2, assignment_pb2_grpc, common_pb2, events_pb2, timeline_pb2, timeline_pb2_grpc

from mesh.telemetry import current_trace_id

# tenant -> task ids it owns (and the project of each); everything else is NOT_FOUND.
TASKS: dict[str, dict[str, str]] = {"acme": {"task-1": "proj-1", "task-2": "proj-1"},
                                    "globex": {"task-9": "proj-9"}}
PEOPLE: dict[str, list[str]] = {"acme": ["ada", "bob", "cy", "dee", "eve", "fay"], "globex": ["gil", "hal"]}


def _provenance(model: str) -> common_pb2.Provenance:
    now = Timestamp()
    now.GetCurrentTime()
    return common_pb2.Provenance(model_name=model, model_version="stub-1", trace_id=current_trace_id(),
                                 predicted_at=now)


class StubAssignment(assignment_pb2_grpc.AssignmentServiceServicer):
    async def RankAssignees(self, request: assignment_pb2.RankAssigneesRequest,
                            context: grpc.aio.ServicerContext) -> assignment_pb2.RankAssigneesResponse:
        tasks = TASKS.get(request.tenant_id, {})
        if request.WhichOneof("task") == "task_id":
            if request.task_id not in tasks:
                await context.abort(grpc.StatusCode.NOT_FOUND, "task not found")
            task_id, project_id = request.task_id, tasks[request.task_id]
        else:
            task_id, project_id = request.payload.task_id, request.payload.project_id
        people = list(request.candidate_ids) or PEOPLE.get(request.tenant_id, [])
        k = request.k or 5
        candidates = [events_pb2.RankedCandidate(
            user_id=p, score=round(1.0 - i / (len(people) + 1), 4),
            reasons=[common_pb2.Reason(feature="skill_match", contribution=0.5, description="stub")])
            for i, p in enumerate(people[:k])]
        return assignment_pb2.RankAssigneesResponse(prediction=events_pb2.AssignmentPrediction(
            task_id=task_id, project_id=project_id, candidates=candidates, provenance=_provenance("assignment")))


def _timeline(kind: events_pb2.EntityKind.ValueType, entity: str, project: str) -> events_pb2.TimelinePrediction:
    done = Timestamp(seconds=int(time.time()) + 3 * 86400)
    return events_pb2.TimelinePrediction(entity_kind=kind, entity_id=entity, project_id=project,
                                         remaining_hours_p10=4, remaining_hours_p50=8, remaining_hours_p90=16,
                                         completion_p10=done, completion_p50=done, completion_p90=done,
                                         deadline_miss_probability=0.25, provenance=_provenance("timeline"))


class StubTimeline(timeline_pb2_grpc.TimelineServiceServicer):
    async def PredictTask(self, request: timeline_pb2.PredictTaskRequest,
                          context: grpc.aio.ServicerContext) -> timeline_pb2.PredictTaskResponse:
        tasks = TASKS.get(request.tenant_id, {})
        if request.task_id not in tasks:
            await context.abort(grpc.StatusCode.NOT_FOUND, "task not found")
        return timeline_pb2.PredictTaskResponse(
            prediction=_timeline(events_pb2.ENTITY_KIND_TASK, request.task_id, tasks[request.task_id]))

    async def PredictProject(self, request: timeline_pb2.PredictProjectRequest,
                             context: grpc.aio.ServicerContext) -> timeline_pb2.PredictProjectResponse:
        if request.project_id not in set(TASKS.get(request.tenant_id, {}).values()):
            await context.abort(grpc.StatusCode.NOT_FOUND, "project not found")
        return timeline_pb2.PredictProjectResponse(
            project=_timeline(events_pb2.ENTITY_KIND_PROJECT, request.project_id, request.project_id),
            milestones=[_timeline(events_pb2.ENTITY_KIND_MILESTONE, "ms-1", request.project_id)])


async def start(port: int = 0, host: str = "127.0.0.1") -> tuple[grpc.aio.Server, int]:
    """Start the stub server; returns it and the bound port (``port=0`` picks a free one)."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    server = grpc.aio.server(interceptors=[aio_server_interceptor()])  # type: ignore[no-untyped-call]
    assignment_pb2_grpc.add_AssignmentServiceServicer_to_server(StubAssignment(), server)  # type: ignore[no-untyped-call]
    timeline_pb2_grpc.add_TimelineServiceServicer_to_server(StubTimeline(), server)  # type: ignore[no-untyped-call]
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    return server, bound


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.devtools.stub_backend")
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--port-file", help="write the bound port here once serving")
    args = parser.parse_args(argv)

    async def run() -> None:
        server, port = await start(args.port)
        if args.port_file:
            with open(args.port_file, "w") as fh:
                fh.write(str(port))
        print(f"stub backend on 127.0.0.1:{port}", flush=True)
        await server.wait_for_termination()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
