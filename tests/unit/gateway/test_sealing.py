"""Webhook signing secrets at rest: AES-GCM under an envelope key from settings, key ids for rotation."""

from __future__ import annotations

import base64
import os

import pytest
from pydantic import SecretStr, ValidationError

from gateway.devtools.harness import new_signing_key
from gateway.settings import AuthSettings, EnvelopeKey, GatewaySettings, WebhookSettings
from gateway.webhooks.sealing import SealError, SecretBox


def _key(kid: str) -> EnvelopeKey:
    return EnvelopeKey(kid=kid, key=SecretStr(base64.b64encode(os.urandom(32)).decode()))


def _box(*keys: EnvelopeKey, active: str = "") -> SecretBox:
    return SecretBox.from_settings(WebhookSettings(secret_keys=list(keys), active_secret_kid=active))


def test_sealed_secret_hides_the_plaintext_and_opens_only_in_its_context() -> None:
    box = _box(_key("k1"))
    sealed = box.seal("whsec_abc", context="wh_1")
    assert "whsec_abc" not in sealed and sealed.split(".")[1] == "k1"
    assert box.open(sealed, context="wh_1") == "whsec_abc"
    assert box.seal("whsec_abc", context="wh_1") != sealed  # a fresh nonce each time
    with pytest.raises(SealError):
        box.open(sealed, context="wh_2")  # moved to another subscription: refused
    tampered = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    with pytest.raises(SealError):
        box.open(tampered, context="wh_1")


def test_rotation_old_secrets_open_with_the_old_key_new_ones_use_the_active_key() -> None:
    k1, k2 = _key("k1"), _key("k2")
    old = _box(k1).seal("whsec_old", context="wh_1")
    rotated = _box(k1, k2, active="k2")
    assert rotated.open(old, context="wh_1") == "whsec_old"
    assert rotated.kid_of(rotated.seal("whsec_new", context="wh_2")) == "k2"
    assert rotated.stale(old) and not rotated.stale(rotated.seal("x", context="c"))
    with pytest.raises(SealError, match="k1"):
        _box(k2).open(old, context="wh_1")  # the old key dropped too early: says which key is missing


def test_settings_refuse_placeholder_short_and_missing_keys() -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        EnvelopeKey(kid="k", key=SecretStr("changeme"))
    with pytest.raises(ValidationError, match="32 bytes"):
        EnvelopeKey(kid="k", key=SecretStr(base64.b64encode(b"short").decode()))
    with pytest.raises(ValidationError, match="active_secret_kid"):
        WebhookSettings(secret_keys=[_key("a")], active_secret_kid="b")
    with pytest.raises(ValidationError, match="secret_keys"):
        GatewaySettings(environment="production", auth=AuthSettings(signing_keys=[new_signing_key("k")]),
                        webhooks=WebhookSettings())
    assert _box().kid_of(_box().seal("x", context="c")) == "dev"  # local/test: a fixed development key
