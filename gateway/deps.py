"""Typed dependencies: who is calling (tenant from the credential only), scope checks, rate limits."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth.principal import Principal
from gateway.auth.store import API_KEY_PREFIX
from gateway.context import GatewayContext
from gateway.metrics import RATE_LIMITED
from gateway.problems import ProblemError, forbidden, unauthorized
from gateway.ratelimit import Decision

_bearer = HTTPBearer(auto_error=False, description="an access token from /oauth/token, or an API key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key (server-to-server)")


async def get_context(request: Request) -> GatewayContext:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    ctx: GatewayContext = request.app.state.gateway
    return ctx


Context = Annotated[GatewayContext, Depends(get_context)]


def _context(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.gateway
    return ctx


async def principal_of(ctx: GatewayContext, bearer: HTTPAuthorizationCredentials | None,
                       api_key: str | None) -> Principal:
    """The caller of a request (401 problem when its credential is missing or invalid)."""
    raw = api_key or (bearer.credentials if bearer else None)
    if not raw:
        raise unauthorized("missing credentials: send 'Authorization: Bearer <token>' or 'X-API-Key'")
    if raw.startswith(API_KEY_PREFIX + "."):
        principal = await ctx.credentials.authenticate_api_key(raw)
        if principal is None:
            raise unauthorized("invalid API key")
        return principal
    return ctx.keys.verify(raw)


def source_address(request: Request) -> str:
    """The caller's address as the server saw it (behind a proxy: run uvicorn with ``--proxy-headers`` and
    ``--forwarded-allow-ips`` naming the proxy, so that this is the client's, not the proxy's)."""
    return request.client.host if request.client else "unknown"


def too_many(decision: Decision, what: str) -> ProblemError:
    return ProblemError(429, "too-many-requests", "Too Many Requests", what, headers=decision.headers,
                        retry_after_s=decision.retry_after_s)


def scoped(scope: str, *, limit: Literal["plan", "management"] = "plan") -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller must hold ``scope``; then one request is charged to its limits: the plan's
    (capability routes) or the management routes' (API keys, webhooks)."""

    # One flat dependency (the credential's two header readers stay: they put the security schemes in the
    # OpenAPI): every nested dependency is solved per request, and FastAPI's solver was a visible share of
    # a request's CPU in the gateway profile.
    async def dependency(request: Request, response: Response,
                         bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
                         api_key: Annotated[str | None, Depends(_api_key)]) -> Principal:
        ctx = _context(request)
        principal = await principal_of(ctx, bearer, api_key)
        if not principal.has(scope):
            raise forbidden(f"this credential lacks the scope {scope!r}")
        if limit == "plan":
            decision = await ctx.limiter.check(principal)
        else:
            decision = await ctx.limiter.check_management(principal, source_address(request))
        if not decision.allowed:
            RATE_LIMITED.labels(_plan_name(ctx, principal)).inc()
            raise too_many(decision, "rate limit or quota exceeded for this tenant or client")
        response.headers.update(decision.headers)
        return principal

    return dependency


def _plan_name(ctx: GatewayContext, principal: Principal) -> str:
    return principal.plan if principal.plan in ctx.settings.plans else ctx.settings.default_plan


AssignmentCaller = Annotated[Principal, Depends(scoped("assignment:read"))]
TimelineCaller = Annotated[Principal, Depends(scoped("timeline:read"))]
NlpCaller = Annotated[Principal, Depends(scoped("nlp:read"))]
PersonalizationCaller = Annotated[Principal, Depends(scoped("personalization:read"))]
AutomationReader = Annotated[Principal, Depends(scoped("automation:read"))]
AutomationWriter = Annotated[Principal, Depends(scoped("automation:write"))]
AnomalyReader = Annotated[Principal, Depends(scoped("anomaly:read"))]
AnomalyWriter = Annotated[Principal, Depends(scoped("anomaly:write"))]
AnomalyAdmin = Annotated[Principal, Depends(scoped("anomaly:admin"))]
WebhookReader = Annotated[Principal, Depends(scoped("webhooks:read", limit="management"))]
WebhookWriter = Annotated[Principal, Depends(scoped("webhooks:write", limit="management"))]
KeyReader = Annotated[Principal, Depends(scoped("keys:read", limit="management"))]
KeyWriter = Annotated[Principal, Depends(scoped("keys:write", limit="management"))]


async def require_admin(ctx: Context, request: Request,
                        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    expected = ctx.settings.auth.admin_token.get_secret_value()
    if not expected:
        raise ProblemError(404, "not-found", "Not Found", "admin routes are disabled")
    # Before the token check, so that guessing it is limited too.
    decision = await ctx.limiter.check_management(None, source_address(request))
    if not decision.allowed:
        raise too_many(decision, "rate limit exceeded for this source address")
    if bearer is None or not hmac.compare_digest(bearer.credentials.encode(), expected.encode()):
        raise unauthorized("admin token required")


Admin = Depends(require_admin)
