"""API keys of the caller's tenant (server-to-server), and the admin route creating OAuth clients."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from gateway.auth.principal import parse_scopes, unknown_scopes
from gateway.deps import Admin, Context, KeyReader, KeyWriter
from gateway.problems import PROBLEM_MEDIA_TYPE, PROBLEM_RESPONSES, Problem, ProblemError, forbidden, not_found
from gateway.schemas.auth import ApiKey, ApiKeyCreated, ApiKeyIn, ApiKeyPage, ClientCreated, ClientIn

router = APIRouter(prefix="/v1/api-keys", tags=["api-keys"], responses={
    **PROBLEM_RESPONSES, 404: {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}}})
admin = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Admin], responses=PROBLEM_RESPONSES)


def _checked(scopes: list[str]) -> frozenset[str]:
    parsed = parse_scopes(scopes)
    if unknown := unknown_scopes(frozenset(scopes)):  # the raw list: an empty string is not a scope either
        named = " ".join(u or "''" for u in unknown)
        raise ProblemError(422, "unknown-scope", "Invalid request", f"unknown scopes: {named}")
    return parsed


@router.post("", status_code=201, summary="Create an API key (the key is shown only here)")
async def create_api_key(body: ApiKeyIn, caller: KeyWriter, ctx: Context) -> ApiKeyCreated:
    scopes = _checked(body.scopes)
    if not scopes <= caller.scopes:
        raise forbidden("an API key cannot have scopes its creator lacks")
    record, key = await ctx.credentials.create_api_key(caller, scopes, body.name)
    return ApiKeyCreated(key_id=record.key_id, scopes=sorted(record.scopes), name=record.name,
                         created_at=record.created_at, key=key)


@router.get("", summary="The tenant's API keys (never the keys themselves)")
async def list_api_keys(caller: KeyReader, ctx: Context) -> ApiKeyPage:
    records = await ctx.credentials.list_api_keys(caller.tenant_id)
    return ApiKeyPage(items=[ApiKey(key_id=r.key_id, scopes=sorted(r.scopes), name=r.name, created_at=r.created_at)
                             for r in records])


@router.delete("/{key_id}", status_code=204, summary="Revoke an API key")
async def revoke_api_key(key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{16}$")], caller: KeyWriter,
                         ctx: Context) -> Response:
    if not await ctx.credentials.revoke_api_key(caller.tenant_id, key_id):
        raise not_found("API key")
    return Response(status_code=204)


@admin.post("/clients", status_code=201, summary="Create an OAuth client of a tenant (secret shown only here)")
async def create_client(body: ClientIn, ctx: Context) -> ClientCreated:
    scopes = _checked(body.scopes)
    plan = body.plan or ctx.settings.default_plan
    if plan not in ctx.settings.plans:
        raise ProblemError(422, "unknown-plan", "Invalid request", f"unknown plan {plan!r}")
    record, secret = await ctx.credentials.create_client(tenant_id=body.tenant_id, scopes=scopes, plan=plan,
                                                         name=body.name)
    return ClientCreated(client_id=record.client_id, client_secret=secret, tenant_id=record.tenant_id,
                         scopes=sorted(record.scopes), plan=record.plan)
