"""Shared fixtures: settings with a fresh topic prefix per test, the tracer with an in-memory exporter."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mesh.config import MeshSettings, TelemetrySettings
from mesh.telemetry import setup_tracing

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="session")
def span_exporter() -> InMemorySpanExporter:
    """The process's tracer provider, exporting to memory (OTel allows one global provider)."""
    setup_tracing(TelemetrySettings(service_name="tests"), exporter=_EXPORTER)
    return _EXPORTER


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(unique: str) -> Iterator[MeshSettings]:
    """Settings for the local stack with a topic prefix of this test's own."""
    s = MeshSettings()
    s.kafka.topic_prefix = f"test-{unique}."
    s.kafka.connect_timeout_s = 10
    yield s
