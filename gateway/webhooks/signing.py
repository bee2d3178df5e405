"""Webhook signatures: HMAC-SHA256 over ``"{timestamp}.{body}"``, sent with the timestamp in headers."""

from __future__ import annotations

import hashlib
import hmac

HEADER_ID = "Sunday-Webhook-Id"
HEADER_TIMESTAMP = "Sunday-Webhook-Timestamp"
HEADER_SIGNATURE = "Sunday-Webhook-Signature"
HEADER_EVENT_TYPE = "Sunday-Event-Type"
HEADER_IDEMPOTENCY = "Idempotency-Key"
SCHEME = "v1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``v1=<hex>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float, tolerance_s: int = 300) -> bool:
    """What a receiver does (the SDK has the same in TypeScript): constant-time compare, bounded clock skew."""
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    expected = sign(secret, int(timestamp), body)
    return any(hmac.compare_digest(expected, part.strip()) for part in signature.split(","))


def headers(delivery_id: str, event_type: str, secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", HEADER_ID: delivery_id, HEADER_IDEMPOTENCY: delivery_id,
            HEADER_TIMESTAMP: str(timestamp), HEADER_SIGNATURE: sign(secret, timestamp, body),
            HEADER_EVENT_TYPE: event_type, "User-Agent": "Sunday-Webhooks/1"}
