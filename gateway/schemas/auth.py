"""Token, client and API key models."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, WithJsonSchema

from gateway.auth.principal import ALL_SCOPES
from gateway.schemas.common import Id, Strict

# The OpenAPI lists the scopes; an unknown one is still answered by the route with its own problem type
# (`unknown-scope`, naming the scopes it did not know) rather than a generic validation error.
Scope = Annotated[str, WithJsonSchema({"type": "string", "enum": list(ALL_SCOPES)})]


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: Literal["Bearer"] = "Bearer"
    expires_in: int
    scope: str


class ClientIn(Strict):
    tenant_id: Id
    scopes: list[Scope] = Field(min_length=1, max_length=20)
    plan: str | None = Field(default=None, max_length=32, description="a configured plan; default: the default plan")
    name: str = Field(default="", max_length=100)


class ClientCreated(BaseModel):
    client_id: str
    client_secret: str = Field(description="shown only in this response")
    tenant_id: str
    scopes: list[str]
    plan: str


class ApiKeyIn(Strict):
    scopes: list[Scope] = Field(min_length=1, max_length=20, description="a subset of the caller's scopes")
    name: str = Field(default="", max_length=100)


class ApiKey(BaseModel):
    key_id: str
    scopes: list[str]
    name: str
    created_at: int


class ApiKeyCreated(ApiKey):
    key: str = Field(description="the full key; shown only in this response")


class ApiKeyPage(BaseModel):
    items: list[ApiKey]
