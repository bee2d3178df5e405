"""Services pass only their metrics port to serve_metrics: the listen address comes from
MESH_TELEMETRY__METRICS_HOST (0.0.0.0 in containers, so Prometheus can scrape another container)."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest

from mesh.telemetry import serve_metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(host: str, port: int) -> str:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as r:
        return bytes(r.read()).decode()


def test_metrics_listen_on_the_configured_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # 127.0.0.2 is loopback too on Linux, but a server bound to it is not reachable on 127.0.0.1: the
    # address served proves which setting was used.
    monkeypatch.setenv("MESH_TELEMETRY__METRICS_HOST", "127.0.0.2")
    port = _free_port()
    server = serve_metrics(port)
    assert server is not None
    try:
        assert server.server_address[0] == "127.0.0.2"
        assert "# TYPE mesh_events_handled_total counter" in _scrape("127.0.0.2", port)
        with pytest.raises(urllib.error.URLError):
            _scrape("127.0.0.1", port)
    finally:
        server.shutdown()
        server.server_close()


def test_explicit_host_wins_and_default_is_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_TELEMETRY__METRICS_HOST", "127.0.0.2")
    explicit = serve_metrics(_free_port(), "127.0.0.1")
    monkeypatch.delenv("MESH_TELEMETRY__METRICS_HOST")
    default = serve_metrics(_free_port())
    try:
        assert explicit is not None and explicit.server_address[0] == "127.0.0.1"
        assert default is not None and default.server_address[0] == "127.0.0.1"
    finally:
        for s in (explicit, default):
            if s is not None:
                s.shutdown()
                s.server_close()


def test_port_zero_serves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESH_TELEMETRY__METRICS_HOST", "0.0.0.0")
    assert serve_metrics(0) is None
