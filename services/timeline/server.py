"""gRPC adapter: PredictTask / PredictProject requests -> the predictor -> responses. Errors are domain
errors; the mesh's interceptor maps them to status codes (NotFound -> NOT_FOUND)."""

from __future__ import annotations

import asyncio

import grpc.aio
from sunday.ml.v1 import timeline_pb2, timeline_pb2_grpc

from mesh.serving import ServiceBinding, bind
from mesh.telemetry import current_trace_id
from services.timeline.predictor import TimelinePredictor

SERVICE_NAME = "sunday.ml.v1.TimelineService"


class TimelineServicer(timeline_pb2_grpc.TimelineServiceServicer):
    def __init__(self, predictor: TimelinePredictor) -> None:
        self._predictor = predictor

    async def PredictTask(
        self, request: timeline_pb2.PredictTaskRequest,
        context: grpc.aio.ServicerContext[timeline_pb2.PredictTaskRequest, timeline_pb2.PredictTaskResponse],
    ) -> timeline_pb2.PredictTaskResponse:
        # state reads and the ONNX run block: off the event loop (the context, with the span, goes along)
        prediction = await asyncio.to_thread(self._predictor.predict_task, request.tenant_id, request.task_id,
                                             None, current_trace_id() or None)
        return timeline_pb2.PredictTaskResponse(prediction=prediction)

    async def PredictProject(
        self, request: timeline_pb2.PredictProjectRequest,
        context: grpc.aio.ServicerContext[timeline_pb2.PredictProjectRequest, timeline_pb2.PredictProjectResponse],
    ) -> timeline_pb2.PredictProjectResponse:
        forecast = await asyncio.to_thread(self._predictor.predict_project, request.tenant_id, request.project_id,
                                           None, int(request.simulations), current_trace_id() or None)
        return timeline_pb2.PredictProjectResponse(project=forecast.project, milestones=list(forecast.milestones))


def binding(predictor: TimelinePredictor) -> ServiceBinding:
    return bind(SERVICE_NAME, timeline_pb2_grpc.add_TimelineServiceServicer_to_server, TimelineServicer(predictor))
