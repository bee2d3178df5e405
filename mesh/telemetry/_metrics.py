"""Prometheus metrics of the bus, declared once, served on an HTTP port."""

from __future__ import annotations

import logging
from wsgiref.simple_server import WSGIServer

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from mesh.config import MeshSettings
from mesh.telemetry import _names as n

log = logging.getLogger(__name__)

_LABELS = ("topic", "group")

EVENTS_HANDLED = Counter(n.METRIC_HANDLED, "Events handled successfully", _LABELS)
EVENTS_FAILED = Counter(n.METRIC_FAILED, "Handler attempts that raised", (*_LABELS, "reason"))
EVENTS_DEAD_LETTERED = Counter(n.METRIC_DEAD_LETTERED, "Events sent to the dead-letter topic", _LABELS)
EVENTS_DUPLICATES = Counter(n.METRIC_DUPLICATES, "Events skipped as duplicates (event_id seen)", _LABELS)
EVENTS_PUBLISHED = Counter(n.METRIC_PUBLISHED, "Events published", ("topic",))
HANDLER_SECONDS = Histogram(n.METRIC_HANDLER_SECONDS, "Handler latency", _LABELS,
                            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5))
CONSUMER_LAG = Gauge(n.METRIC_CONSUMER_LAG, "Messages behind the high watermark", (*_LABELS, "partition"))
CONSUMER_BACKPRESSURE = Gauge(n.METRIC_BACKPRESSURE, "1 while the consumer holds a batch (partitions paused) "
                              "because a dependency fails transiently; reason = the error type", (*_LABELS, "reason"))
CONSUMER_BACKPRESSURE_RETRIES = Counter(n.METRIC_BACKPRESSURE_RETRIES, "Retries of a held batch past the retry "
                                        "policy", (*_LABELS, "reason"))

ALERTS_RAISED = Counter(n.METRIC_ALERTS_RAISED, "Alerts a capability raised (first time only, not redeliveries), "
                        "by the rule that fired and its severity", ("capability", "rule", "severity"))
PREDICTION_SCORE = Histogram(n.METRIC_PREDICTION_SCORE, "Scores a capability's model gave, per tenant (anomaly: the "
                             "ensemble's margin over its threshold, >= 0 alerts)", ("capability", "tenant"),
                             buckets=(-10, -5, -2, -1, 0, 1, 2, 5, 10, 20, 50, 100))


def serve_metrics(port: int, host: str | None = None) -> WSGIServer | None:
    """Serve /metrics on ``host:port`` (port 0 = do not serve) and return the server (None when not served).

    ``host`` None means the configured ``MESH_TELEMETRY__METRICS_HOST`` (default 127.0.0.1; containers set
    0.0.0.0 so that Prometheus can scrape them), so a service that passes only its port still listens where
    the deployment says."""
    if not port:
        return None
    if host is None:
        host = MeshSettings().telemetry.metrics_host  # MESH_TELEMETRY__METRICS_HOST from the environment
    server, _ = start_http_server(port, addr=host)
    log.info("prometheus metrics on http://%s:%d/metrics", host, port)
    return server
