"""OpenTelemetry tracer set-up and trace context carried in Kafka headers."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from mesh.config import TelemetrySettings

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]
_TRACE_HEADERS = frozenset({"traceparent", "tracestate", "baggage"})


def setup_tracing(settings: TelemetrySettings, exporter: SpanExporter | None = None) -> TracerProvider:
    """Build a tracer provider for this process and install it as the global one.

    ``exporter`` overrides ``settings.exporter`` (tests pass an ``InMemorySpanExporter``).
    OpenTelemetry allows one global provider per process; a second call returns the installed one with
    the new exporter added.
    """
    current = trace.get_tracer_provider()
    provider = current if isinstance(current, TracerProvider) else TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    chosen = exporter or _exporter_for(settings)
    if chosen is not None:
        processor = (
            SimpleSpanProcessor(chosen)
            if isinstance(chosen, InMemorySpanExporter | ConsoleSpanExporter)
            else BatchSpanProcessor(chosen)
        )
        provider.add_span_processor(processor)
    if provider is not current:
        trace.set_tracer_provider(provider)
    log.info("tracing: service=%s exporter=%s sample_ratio=%s", settings.service_name,
             type(chosen).__name__ if chosen else "none", settings.sample_ratio)
    return provider


def _exporter_for(settings: TelemetrySettings) -> SpanExporter | None:
    if settings.exporter == "console":
        return ConsoleSpanExporter()
    if settings.exporter == "memory":
        return InMemorySpanExporter()
    if settings.exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=settings.otlp_endpoint, insecure=True)
    return None


def inject_headers(headers: Headers) -> Headers:
    """Append the current trace context (``traceparent``) to Kafka headers."""
    carrier: dict[str, str] = {}
    inject(carrier)
    headers.extend((k, v.encode()) for k, v in carrier.items())
    return headers


def context_from_headers(headers: Sequence[tuple[str, bytes | str | None]] | None) -> otel_context.Context:
    """The producer's trace context from Kafka headers, to start the consumer's span as its child."""
    carrier = {k: (v.decode() if isinstance(v, bytes) else v or "") for k, v in (headers or []) if k in _TRACE_HEADERS}
    return extract(carrier)


class TraceContexts:
    """:func:`context_from_headers` for a consumer's hot path: the context is extracted once per distinct
    set of trace headers (a batch's events mostly share one producer trace, or carry none) and reused;
    contexts are immutable, so sharing one is safe. At most ``size`` are kept (then it starts over)."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._known: dict[tuple[tuple[str, bytes | str | None], ...], otel_context.Context] = {}

    def __call__(self, headers: Sequence[tuple[str, bytes | str | None]] | None) -> otel_context.Context:
        key = tuple(h for h in headers or () if h[0] in _TRACE_HEADERS)
        ctx = self._known.get(key)
        if ctx is None:
            if len(self._known) >= self._size:
                self._known.clear()
            ctx = self._known[key] = context_from_headers(key)
        return ctx


def current_trace_id() -> str:
    """The current span's trace id as 32 hex chars ('' outside a span)."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""
