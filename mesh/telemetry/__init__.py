"""OpenTelemetry set-up, trace context in Kafka headers, Prometheus metrics; names declared once."""

from mesh.telemetry import _names as names
from mesh.telemetry._metrics import (
    ALERTS_RAISED,
    CONSUMER_BACKPRESSURE,
    CONSUMER_BACKPRESSURE_RETRIES,
    CONSUMER_LAG,
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATES,
    EVENTS_FAILED,
    EVENTS_HANDLED,
    EVENTS_PUBLISHED,
    HANDLER_SECONDS,
    PREDICTION_SCORE,
    serve_metrics,
)
from mesh.telemetry._tracing import (
    Headers,
    TraceContexts,
    context_from_headers,
    current_trace_id,
    inject_headers,
    setup_tracing,
)

__all__ = [
    "ALERTS_RAISED",
    "CONSUMER_BACKPRESSURE",
    "CONSUMER_BACKPRESSURE_RETRIES",
    "CONSUMER_LAG",
    "EVENTS_DEAD_LETTERED",
    "EVENTS_DUPLICATES",
    "EVENTS_FAILED",
    "EVENTS_HANDLED",
    "EVENTS_PUBLISHED",
    "HANDLER_SECONDS",
    "PREDICTION_SCORE",
    "Headers",
    "TraceContexts",
    "context_from_headers",
    "current_trace_id",
    "inject_headers",
    "names",
    "serve_metrics",
    "setup_tracing",
]
