"""``python -m gateway [serve|worker|openapi]``: wiring only."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from gateway.settings import GatewaySettings

WORKER_FAILED = 3
"""Exit code of ``python -m gateway worker`` when its consumer died (the services' ConsumerDied code)."""


def _serve(settings: GatewaySettings) -> int:
    import uvicorn

    from gateway.main import create_app
    from mesh.telemetry import serve_metrics, setup_tracing

    options: dict[str, object] = {"host": settings.host, "port": settings.port, "log_level": "info",
                                  "proxy_headers": False, "server_header": False}
    if settings.workers > 1:
        # uvicorn's supervisor starts the workers; each builds the app from the same environment
        # (gateway.main.app_from_env). Metrics: each worker's own /metrics on the app port.
        uvicorn.run("gateway.main:app_from_env", factory=True, workers=settings.workers, **options)  # type: ignore[arg-type]
        return 0
    setup_tracing(settings.telemetry)
    if settings.telemetry.metrics_port != settings.port:  # the app serves /metrics on its own port anyway
        serve_metrics(settings.telemetry.metrics_port, settings.telemetry.metrics_host)
    uvicorn.run(create_app(settings), **options)  # type: ignore[arg-type]
    return 0


def _worker(settings: GatewaySettings) -> int:
    """Only the webhook delivery worker (scale it apart from the HTTP side)."""
    from redis.asyncio import Redis

    from gateway.webhooks.sealing import SecretBox
    from gateway.webhooks.store import WebhookStore
    from gateway.worker import DeliveryWorker
    from mesh.telemetry import serve_metrics, setup_tracing

    setup_tracing(settings.telemetry)
    serve_metrics(settings.telemetry.metrics_port, settings.telemetry.metrics_host)  # no app here to serve them

    async def run() -> int:
        import signal
        import time

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        redis: Redis[bytes] = Redis.from_url(settings.redis.url)
        store = WebhookStore(redis, settings.redis_prefix, box=SecretBox.from_settings(settings.webhooks))
        worker = DeliveryWorker(settings, store, time.time)
        await worker.start()
        waits = [asyncio.create_task(stop.wait()), asyncio.create_task(worker.failed.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiting in waits:
            waiting.cancel()
        await worker.stop()
        if worker.failed.is_set():  # a dead consumer is a dead worker: exit non-zero, the orchestrator restarts it
            logging.getLogger(__name__).critical("the webhook consumer gave up; exiting with code %d", WORKER_FAILED)
            return WORKER_FAILED
        return 0

    return asyncio.run(run())


def _openapi(settings: GatewaySettings) -> int:
    from gateway.main import create_app

    print(json.dumps(create_app(settings).openapi(), indent=2, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway")
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "worker", "openapi"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = GatewaySettings()
    if args.command == "worker":
        webhooks = settings.webhooks.model_copy(update={"worker_enabled": True})
        settings = settings.model_copy(update={"webhooks": webhooks})
        return _worker(settings)
    return {"serve": _serve, "openapi": _openapi}[args.command](settings)


if __name__ == "__main__":
    sys.exit(main())
