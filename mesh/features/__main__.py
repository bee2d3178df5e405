"""`python -m mesh.features apply|consume|replay|stats|offline` (see `--help`).

`consume` is the feature ingestor as its own process (docker-compose.yml `features`, deploy/k8s `features`):
the features consumer group on every input topic -> aggregates in Redis, Feast online rows and the offline
event log, until SIGTERM/SIGINT. Run that way it also serves Prometheus /metrics on
MESH_TELEMETRY__METRICS_PORT (MESH_TELEMETRY__METRICS_HOST) and exports traces as configured, like a service.
"""

import sys

from mesh.features._cli import main


def _run(argv: list[str]) -> int:
    if argv[:1] == ["consume"]:
        from mesh.config import MeshSettings
        from mesh.telemetry import serve_metrics, setup_tracing

        telemetry = MeshSettings().telemetry
        setup_tracing(telemetry)
        serve_metrics(telemetry.metrics_port, telemetry.metrics_host)
    return main(argv)


if __name__ == "__main__":
    raise SystemExit(_run(sys.argv[1:]))
