"""``uvicorn --factory gateway.devtools.bench_app:app``: the gateway from environment settings, for bench/."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.main import create_app
from gateway.settings import GatewaySettings


def app() -> FastAPI:
    return create_app(GatewaySettings())
