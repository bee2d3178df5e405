"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from gateway.deps import Context
from gateway.problems import unavailable

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    webhook_consumer: str | None = Field(
        default=None, description="state of the in-process webhook consumer (starting, running, restarting, "
                                  "failed, stopped); absent when the worker runs in its own process")


@router.get("/healthz", summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="Redis answers and the webhook consumer has not given up",
            response_model_exclude_none=True)
async def readyz(ctx: Context) -> Health:
    try:
        await ctx.redis.ping()  # type: ignore[misc]
    except RedisError:
        raise unavailable("redis is unreachable", 5) from None
    state = ctx.worker.consumer_state if ctx.worker is not None else None
    if state == "failed":
        # A restarting consumer is still ready (HTTP works, deliveries wait in Kafka); one that gave up is not.
        raise unavailable("the webhook consumer failed and gave up restarting", 5)
    return Health(status="ready", webhook_consumer=state)
