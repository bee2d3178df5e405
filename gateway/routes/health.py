"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from redis.exceptions import RedisError

from gateway.deps import Context
from gateway.problems import unavailable

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


@router.get("/healthz", summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", summary="Redis answers")
async def readyz(ctx: Context) -> Health:
    try:
        await ctx.redis.ping()  # type: ignore[misc]
    except RedisError:
        raise unavailable("redis is unreachable", 5) from None
    return Health(status="ready")
