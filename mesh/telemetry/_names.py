"""Span and metric names, declared once."""

from typing import Final, Literal

SpanName = Literal["mesh.publish", "mesh.consume", "mesh.handle"]

SPAN_PUBLISH: Final = "mesh.publish"
SPAN_CONSUME: Final = "mesh.consume"
SPAN_HANDLE: Final = "mesh.handle"

METRIC_HANDLED: Final = "mesh_events_handled"
METRIC_FAILED: Final = "mesh_events_failed"
METRIC_DEAD_LETTERED: Final = "mesh_events_dead_lettered"
METRIC_DUPLICATES: Final = "mesh_events_duplicates"
METRIC_PUBLISHED: Final = "mesh_events_published"
METRIC_HANDLER_SECONDS: Final = "mesh_handler_seconds"
METRIC_CONSUMER_LAG: Final = "mesh_consumer_lag"
METRIC_BACKPRESSURE: Final = "mesh_consumer_backpressure"
METRIC_BACKPRESSURE_RETRIES: Final = "mesh_consumer_backpressure_retries"
METRIC_ALERTS_RAISED: Final = "mesh_alerts_raised"
METRIC_PREDICTION_SCORE: Final = "mesh_prediction_score"

HEADER_TRACEPARENT: Final = "traceparent"
HEADER_TENANT: Final = "tenant-id"
HEADER_CONTENT_TYPE: Final = "content-type"
HEADER_EVENT_TYPE: Final = "event-type"
HEADER_EVENT_ID: Final = "event-id"
