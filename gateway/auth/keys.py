"""Signed access tokens (ES256 JWTs): the active key signs, every configured key verifies, by ``kid``."""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.auth.principal import Principal, parse_scopes
from gateway.problems import unauthorized
from gateway.settings import AuthSettings

log = logging.getLogger(__name__)
ALGORITHM = "ES256"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str


VERIFIED_CACHE_SIZE = 10_000
"""Most verified tokens remembered per process (least recently used ones are forgotten first)."""


class _VerifiedTokens:
    """token -> (principal, valid until); an expired entry is dropped and the token verified again."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def get(self, token: str, now: float) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        if now >= entry[1]:
            del self._entries[token]
            return None
        self._entries.move_to_end(token)
        return entry[0]

    def put(self, token: str, principal: Principal, valid_until: float) -> None:
        self._entries[token] = (principal, valid_until)
        self._entries.move_to_end(token)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class KeyRing:
    """Signs with the active key and verifies with any key by the token's ``kid`` (rotation without downtime:
    add the new key, make it active, drop the old one after the longest token lifetime)."""

    def __init__(self, settings: AuthSettings, keys: dict[str, ec.EllipticCurvePrivateKey],
                 clock: Callable[[], float]) -> None:
        if not keys:
            raise ValueError("a key ring needs at least one key")
        self._settings = settings
        self._keys = keys
        # Derived once: public_key() per request showed up in the gateway profile.
        self._public = {kid: key.public_key() for kid, key in keys.items()}
        self._active = settings.active_kid or list(keys)[-1]
        self._clock = clock
        self._verified = _VerifiedTokens(VERIFIED_CACHE_SIZE)

    @classmethod
    def from_settings(cls, settings: AuthSettings, clock: Callable[[], float]) -> KeyRing:
        keys: dict[str, ec.EllipticCurvePrivateKey] = {}
        for key in settings.signing_keys:
            loaded = serialization.load_pem_private_key(key.private_key_pem.get_secret_value().encode(), None)
            if not isinstance(loaded, ec.EllipticCurvePrivateKey):
                raise ValueError(f"signing key {key.kid!r} is not an EC private key (ES256)")
            keys[key.kid] = loaded
        if not keys:
            # Local and test only (the settings refuse this elsewhere): tokens die with the process.
            log.warning("no signing keys configured: using an ephemeral key")
            keys["ephemeral"] = ec.generate_private_key(ec.SECP256R1())
        return cls(settings, keys, clock)

    @property
    def active_kid(self) -> str:
        return self._active

    def issue(self, *, tenant_id: str, client_id: str, scopes: frozenset[str], plan: str) -> IssuedToken:
        now = int(self._clock())
        scope = " ".join(sorted(scopes))
        claims = {"iss": self._settings.issuer, "aud": self._settings.audience, "sub": client_id,
                  "tid": tenant_id, "scope": scope, "plan": plan, "iat": now, "nbf": now,
                  "exp": now + self._settings.token_ttl_s, "jti": uuid.uuid4().hex}
        token = jwt.encode(claims, self._keys[self._active], algorithm=ALGORITHM, headers={"kid": self._active})
        return IssuedToken(token, self._settings.token_ttl_s, scope)

    def verify(self, token: str) -> Principal:
        """The token's principal; 401 problem when it is malformed, expired, foreign or badly signed.

        A token that verified before is answered from a bounded cache until its ``exp`` (plus leeway):
        the signature and claims of the same string cannot change, and PyJWT's parsing and the ECDSA
        check were the largest part of an authenticated request's CPU time. The keys are fixed for the
        life of the process (rotation is a redeploy), so a cached verdict never outlives its key.
        """
        # Wall time, as PyJWT checks exp against it (the injected clock only stamps issued tokens).
        cached = self._verified.get(token, time.time())
        if cached is not None:
            return cached
        principal, expires_at = self._verify_signed(token)
        self._verified.put(token, principal, expires_at + self._settings.leeway_s)
        return principal

    def _verify_signed(self, token: str) -> tuple[Principal, float]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise unauthorized("malformed token") from None
        key = self._public.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise unauthorized("unknown signing key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=[ALGORITHM], audience=self._settings.audience,
                issuer=self._settings.issuer, leeway=self._settings.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "tid"]})
        except jwt.ExpiredSignatureError:
            raise unauthorized("token expired") from None
        except jwt.InvalidAudienceError:
            raise unauthorized("token not meant for this audience") from None
        except jwt.InvalidIssuerError:
            raise unauthorized("token from an unknown issuer") from None
        except jwt.PyJWTError:
            raise unauthorized("invalid token") from None
        principal = Principal(tenant_id=str(claims["tid"]), client_id=str(claims["sub"]),
                              scopes=parse_scopes(claims.get("scope")), plan=str(claims.get("plan", "")), via="token")
        return principal, float(claims["exp"])

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """Public keys (RFC 7517), for verifiers outside the gateway."""
        keys = []
        for kid, key in self._keys.items():
            jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"})
        return {"keys": keys}
