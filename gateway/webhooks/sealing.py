"""Webhook signing secrets at rest: AES-256-GCM under an envelope key from settings (a Kubernetes Secret).

A sealed secret reads ``v1.<kid>.<base64url(nonce | ciphertext | tag)>``; the key id says which key opens
it, so rotation is: add the new key, make it active (new secrets use it, old ones still open and are
re-sealed with it when next used), drop the old key once nothing needs it. The subscription id is the
associated data: a sealed value copied onto another subscription does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.settings import WebhookSettings

log = logging.getLogger(__name__)

VERSION = "v1"
DEV_KID = "dev"
DEV_KEY = hashlib.sha256(b"sunday-ml webhook secrets: local and test only").digest()
"""The key used when none is configured; the settings allow that only in local/test."""


class SealError(Exception):
    """A sealed secret that cannot be opened (unknown key id, tampered, or moved to another subscription)."""


class SecretBox:
    """Seals with the active key, opens with any configured key by the sealed value's key id."""

    def __init__(self, keys: dict[str, bytes], active: str) -> None:
        if active not in keys:
            raise ValueError(f"active key {active!r} is not among {sorted(keys)}")
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.items()}
        self.active = active

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> SecretBox:
        keys = {k.kid: base64.b64decode(k.key.get_secret_value()) for k in settings.secret_keys}
        if not keys:
            log.warning("no webhook secret keys configured: using the development key (local/test only)")
            return cls({DEV_KID: DEV_KEY}, DEV_KID)
        return cls(keys, settings.active_secret_kid or list(keys)[-1])

    def seal(self, plaintext: str, context: str) -> str:
        """``plaintext`` encrypted under the active key, bound to ``context`` (the subscription id)."""
        nonce = os.urandom(12)
        sealed = nonce + self._ciphers[self.active].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}.{self.active}.{base64.urlsafe_b64encode(sealed).decode()}"

    def open(self, sealed: str, context: str) -> str:
        kid = self.kid_of(sealed)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise SealError(f"webhook secret sealed with key {kid!r}, which is not configured")
        try:
            raw = base64.urlsafe_b64decode(sealed.split(".", 2)[2])
            return cipher.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError(f"webhook secret (key {kid!r}) does not open: tampered or not this subscription's"
                            ) from None

    @staticmethod
    def kid_of(sealed: str) -> str:
        version, kid, _ = [*sealed.split(".", 2), "", ""][:3]
        if version != VERSION or not kid:
            raise SealError("not a sealed webhook secret")
        return kid

    def stale(self, sealed: str) -> bool:
        """Sealed under a key other than the active one (re-seal it)."""
        return self.kid_of(sealed) != self.active
