"""OAuth 2.0 client-credentials token endpoint and the public keys that verify its tokens."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request

from gateway.auth.principal import parse_scopes
from gateway.deps import Context, source_address, too_many
from gateway.problems import PROBLEM_MEDIA_TYPE, Problem, ProblemError
from gateway.schemas.auth import TokenResponse

router = APIRouter(tags=["auth"])

_FORM = {"type": "object", "required": ["grant_type"], "properties": {
    "grant_type": {"type": "string", "enum": ["client_credentials"]},
    "client_id": {"type": "string"}, "client_secret": {"type": "string"},
    "scope": {"type": "string", "description": "space-separated; default: every scope of the client"}}}


def _oauth_error(status: int, error: str, detail: str) -> ProblemError:
    headers = {"WWW-Authenticate": 'Basic realm="token"'} if status == 401 else {}
    return ProblemError(status, f"oauth-{error.replace('_', '-')}", "Token request refused", detail, headers,
                        error=error)


async def _form(request: Request) -> dict[str, str]:
    raw = await request.body()
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    try:
        if content_type == "application/json":
            data: Any = json.loads(raw or b"{}")
            if not isinstance(data, dict):
                raise ValueError("not an object")
            return {str(k): str(v) for k, v in data.items()}
        if content_type in ("application/x-www-form-urlencoded", ""):
            return {k: v[0] for k, v in parse_qs(raw.decode(), keep_blank_values=True).items()}
    except (ValueError, UnicodeDecodeError):
        raise _oauth_error(400, "invalid_request", "the body could not be parsed") from None
    raise ProblemError(415, "unsupported-media-type", "Unsupported Media Type",
                       "send application/x-www-form-urlencoded")


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _oauth_error(401, "invalid_client", "malformed Basic credentials") from None
    return unquote(user), unquote(password)


@router.post(
    "/oauth/token", response_model=TokenResponse, summary="Issue an access token (client credentials)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": _FORM}, "application/json": {"schema": _FORM}}}},
    responses={400: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}},
               401: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}},
               429: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "too many requests"}},
)
async def issue_token(request: Request, ctx: Context) -> TokenResponse:
    form = await _form(request)
    if form.get("grant_type") != "client_credentials":
        raise _oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    client_id, secret = _basic(request) or (form.get("client_id", ""), form.get("client_secret", ""))
    # Charged before the secret is checked: wrong secrets count, per client id and per source address.
    decision = await ctx.limiter.check_token(client_id[:64], source_address(request))
    if not decision.allowed:
        raise too_many(decision, "too many token requests for this client or from this address")
    client = await ctx.credentials.authenticate_client(client_id, secret)
    if client is None:
        raise _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    asked = parse_scopes(form.get("scope")) or client.scopes
    if not asked <= client.scopes:
        extra = " ".join(sorted(asked - client.scopes))
        raise _oauth_error(400, "invalid_scope", f"the client may not ask for: {extra}")
    issued = ctx.keys.issue(tenant_id=client.tenant_id, client_id=client.client_id, scopes=asked, plan=client.plan)
    return TokenResponse(access_token=issued.access_token, expires_in=issued.expires_in, scope=issued.scope)


@router.get("/.well-known/jwks.json", summary="Public keys verifying access tokens (by kid)")
async def jwks(ctx: Context) -> dict[str, list[dict[str, Any]]]:
    return ctx.keys.jwks()
