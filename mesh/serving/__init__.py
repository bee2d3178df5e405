"""gRPC serving: server bootstrap (health, reflection, OpenTelemetry, graceful shutdown), the one
interceptor that maps domain errors (:mod:`mesh.errors`) to status codes, and client helpers."""

from mesh.serving._client import DEFAULT_RETRY, RetryPolicy, call_with_retry, channel, domain_error
from mesh.serving._gc import GcMonitor, GcStats, gc_stats, tune_gc
from mesh.serving._interceptor import INTERNAL_MESSAGE, STATUS_CODES, ErrorMappingInterceptor, status_for
from mesh.serving._server import DEFAULT_GRACE_S, MeshServer, ServiceBinding, bind, build_server, serve
from mesh.serving._service import ConsumerDied, run_service, service_main

__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_RETRY",
    "INTERNAL_MESSAGE",
    "STATUS_CODES",
    "ConsumerDied",
    "ErrorMappingInterceptor",
    "GcMonitor",
    "GcStats",
    "MeshServer",
    "RetryPolicy",
    "ServiceBinding",
    "bind",
    "build_server",
    "call_with_retry",
    "channel",
    "domain_error",
    "gc_stats",
    "run_service",
    "serve",
    "service_main",
    "status_for",
    "tune_gc",
]
