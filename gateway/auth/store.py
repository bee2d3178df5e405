"""OAuth clients and API keys in Redis, secrets stored only as SHA-256 hashes.

The secrets are 256-bit random values generated here, so a fast hash is enough (no password stretching):
a leaked hash cannot be brute-forced back to a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from gateway.auth.principal import Principal, parse_scopes

API_KEY_PREFIX = "smk"


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class ClientRecord:
    client_id: str
    tenant_id: str
    scopes: frozenset[str]
    plan: str
    name: str


@dataclass(frozen=True)
class ApiKeyRecord:
    key_id: str
    tenant_id: str
    scopes: frozenset[str]
    plan: str
    name: str
    created_at: int


class CredentialStore:
    """Clients (client-credentials grant) and API keys, per tenant."""

    def __init__(self, redis: Redis[bytes], prefix: str) -> None:
        self._r = redis
        self._p = prefix

    async def create_client(self, *, tenant_id: str, scopes: frozenset[str], plan: str,
                            name: str) -> tuple[ClientRecord, str]:
        """A new client; returns it with its secret (shown once, only the hash is kept)."""
        client_id, secret = "cl_" + secrets.token_hex(12), secrets.token_urlsafe(32)
        await self._r.hset(f"{self._p}client:{client_id}", mapping={
            "tenant_id": tenant_id, "secret_sha256": _hash(secret), "scopes": " ".join(sorted(scopes)),
            "plan": plan, "name": name})
        return ClientRecord(client_id, tenant_id, scopes, plan, name), secret

    async def authenticate_client(self, client_id: str, secret: str) -> ClientRecord | None:
        data = await self._r.hgetall(f"{self._p}client:{client_id}") if client_id else {}
        # Compare against a dummy hash when the client is unknown, so both paths cost the same.
        expected = data.get(b"secret_sha256", b"0" * 64).decode()
        if not hmac.compare_digest(expected, _hash(secret)) or not data:
            return None
        return ClientRecord(client_id, data[b"tenant_id"].decode(), parse_scopes(data[b"scopes"].decode()),
                            data[b"plan"].decode(), data[b"name"].decode())

    async def create_api_key(self, owner: Principal, scopes: frozenset[str], name: str) -> tuple[ApiKeyRecord, str]:
        """A new API key of the owner's tenant; returns it with the full key (shown once)."""
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        now = int(time.time())
        await self._r.hset(f"{self._p}apikey:{key_id}", mapping={
            "tenant_id": owner.tenant_id, "secret_sha256": _hash(secret), "scopes": " ".join(sorted(scopes)),
            "plan": owner.plan, "name": name, "created_at": now})
        await self._r.sadd(f"{self._p}tenant:{owner.tenant_id}:apikeys", key_id)
        record = ApiKeyRecord(key_id, owner.tenant_id, scopes, owner.plan, name, now)
        return record, f"{API_KEY_PREFIX}.{key_id}.{secret}"

    async def authenticate_api_key(self, raw: str) -> Principal | None:
        prefix, _, rest = raw.partition(".")
        key_id, _, secret = rest.partition(".")
        if prefix != API_KEY_PREFIX or not key_id or not secret:
            return None
        data = await self._r.hgetall(f"{self._p}apikey:{key_id}")
        expected = data.get(b"secret_sha256", b"0" * 64).decode()
        if not hmac.compare_digest(expected, _hash(secret)) or not data:
            return None
        return Principal(tenant_id=data[b"tenant_id"].decode(), client_id=f"key:{key_id}",
                         scopes=parse_scopes(data[b"scopes"].decode()), plan=data[b"plan"].decode(), via="api_key")

    async def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        ids = sorted(k.decode() for k in await self._r.smembers(f"{self._p}tenant:{tenant_id}:apikeys"))
        records = [await self._api_key(tenant_id, key_id) for key_id in ids]
        return [r for r in records if r is not None]

    async def _api_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord | None:
        data = await self._r.hgetall(f"{self._p}apikey:{key_id}")
        if not data or data[b"tenant_id"].decode() != tenant_id:
            return None
        return ApiKeyRecord(key_id, tenant_id, parse_scopes(data[b"scopes"].decode()), data[b"plan"].decode(),
                            data[b"name"].decode(), int(data[b"created_at"]))

    async def revoke_api_key(self, tenant_id: str, key_id: str) -> bool:
        """False when the key does not exist in this tenant (another tenant's key is not revealed)."""
        if await self._api_key(tenant_id, key_id) is None:
            return False
        await self._r.delete(f"{self._p}apikey:{key_id}")
        await self._r.srem(f"{self._p}tenant:{tenant_id}:apikeys", key_id)
        return True
