"""Typed dependencies: who is calling (tenant from the credential only), scope checks, rate limits."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth.principal import Principal
from gateway.auth.store import API_KEY_PREFIX
from gateway.context import GatewayContext
from gateway.metrics import RATE_LIMITED
from gateway.problems import ProblemError, forbidden, unauthorized

_bearer = HTTPBearer(auto_error=False, description="an access token from /oauth/token, or an API key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (server-to-server)")


async def get_context(request: Request) -> GatewayContext:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    ctx: GatewayContext = request.app.state.gateway
    return ctx


Context = Annotated[GatewayContext, Depends(get_context)]


async def authenticate(
    ctx: Context,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    raw = api_key or (bearer.credentials if bearer else None)
    if not raw:
        raise unauthorized("missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key'")
    if raw.startswith(API_KEY_PREFIX + "."):
        principal = await ctx.credentials.authenticate_api_key(raw)
        if principal is None:
            raise unauthorized("invalid API key")
        return principal
    return ctx.keys.verify(raw)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def scoped(scope: str, *, limited: bool = True) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller must hold ``scope``; then one request is charged to its rate limit."""

    async def dependency(principal: CurrentPrincipal, ctx: Context, response: Response) -> Principal:
        if not principal.has(scope):
            raise forbidden(f"this credential lacks the scope {scope!r}")
        if limited:
            decision = await ctx.limiter.check(principal)
            if not decision.allowed:
                plan = principal.plan if principal.plan in ctx.settings.plans else ctx.settings.default_plan
                RATE_LIMITED.labels(plan).inc()
                raise ProblemError(429, "too-many-requests", "Too Many Requests",
                                   "rate limit or quota exceeded for this tenant or client",
                                   headers=decision.headers, retry_after_s=decision.retry_after_s)
            response.headers.update(decision.headers)
        return principal

    return dependency


AssignmentCaller = Annotated[Principal, Depends(scoped("assignment:read"))]
TimelineCaller = Annotated[Principal, Depends(scoped("timeline:read"))]
WebhookReader = Annotated[Principal, Depends(scoped("webhooks:read", limited=False))]
WebhookWriter = Annotated[Principal, Depends(scoped("webhooks:write", limited=False))]
KeyReader = Annotated[Principal, Depends(scoped("keys:read", limited=False))]
KeyWriter = Annotated[Principal, Depends(scoped("keys:write", limited=False))]


async def require_admin(ctx: Context, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    expected = ctx.settings.auth.admin_token.get_secret_value()
    if not expected:
        raise ProblemError(404, "not-found", "Not Found", "admin routes are disabled")
    if bearer is None or not hmac.compare_digest(bearer.credentials.encode(), expected.encode()):
        raise unauthorized("admin token required")


Admin = Depends(require_admin)
