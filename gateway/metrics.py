"""The gateway's Prometheus metrics, names declared once here; served on the app at ``/metrics``.

The bus's metrics (mesh/telemetry) live in the same default registry, so one scrape of the gateway
shows the webhook consumer's handled/lag series next to these.
"""

from __future__ import annotations

import time
from typing import Final, Literal

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

METRIC_HTTP_REQUESTS: Final = "gateway_http_requests"
METRIC_HTTP_SECONDS: Final = "gateway_http_request_seconds"
METRIC_RATE_LIMITED: Final = "gateway_rate_limited"
METRIC_BACKEND_RETRIES: Final = "gateway_backend_retries"
METRIC_WEBHOOK_DELIVERIES: Final = "gateway_webhook_deliveries"
METRIC_WEBHOOK_CONSUMER_RESTARTS: Final = "gateway_webhook_consumer_restarts"
METRIC_WEBHOOK_CONSUMER_UP: Final = "gateway_webhook_consumer_up"

METRICS_PATH: Final = "/metrics"
UNMATCHED_ROUTE: Final = "unmatched"
"""The route label of requests no route matched (raw paths would make the label set unbounded)."""

DeliveryOutcome = Literal["ok", "failed", "dead_lettered"]
"""ok: 2xx; failed: an attempt that will be retried; dead_lettered: the last attempt failed."""

HTTP_REQUESTS = Counter(METRIC_HTTP_REQUESTS, "HTTP requests answered", ("method", "route", "status"))
HTTP_SECONDS = Histogram(METRIC_HTTP_SECONDS, "HTTP request latency, first byte in to last byte out",
                         ("method", "route"),
                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
RATE_LIMITED = Counter(METRIC_RATE_LIMITED, "Requests refused with 429 by the rate limit or quota", ("plan",))
BACKEND_RETRIES = Counter(METRIC_BACKEND_RETRIES, "gRPC calls to a backend that needed more than one attempt",
                          ("capability",))
WEBHOOK_DELIVERIES = Counter(METRIC_WEBHOOK_DELIVERIES, "Webhook delivery attempts by outcome", ("outcome",))
WEBHOOK_CONSUMER_RESTARTS = Counter(METRIC_WEBHOOK_CONSUMER_RESTARTS,
                                    "Restarts of the webhook worker's Kafka consumer after it failed")
WEBHOOK_CONSUMER_UP = Gauge(METRIC_WEBHOOK_CONSUMER_UP, "1 while the webhook worker's Kafka consumer runs")


async def metrics_endpoint(_request: Request) -> Response:
    """The Prometheus text exposition of this process's registry."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Pure ASGI middleware: one count and one latency observation per HTTP request, by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before starting a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = _route(scope)
            HTTP_REQUESTS.labels(scope["method"], route, str(status)).inc()
            HTTP_SECONDS.labels(scope["method"], route).observe(time.perf_counter() - started)


def _route(scope: Scope) -> str:
    # The router stores the matched route in the scope; its path is the template (`/v1/timeline/tasks/{task_id}`).
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE
