"""Deadline-risk alerts with hysteresis: an alert fires once when P(miss) reaches `threshold`, and not
again until P(miss) has fallen below `threshold - hysteresis` (which re-arms it). Whether an alert is
active is kept per `dedup_key` in a store (Redis in the service), so a restarted service does not alert
again for a risk it already reported."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Protocol

from sunday.ml.v1 import common_pb2, events_pb2

CAPABILITY = "timeline"
KIND = "deadline_risk"


@dataclass(frozen=True)
class AlertPolicy:
    """When a deadline-risk alert fires."""

    threshold: float = 0.5
    """P(miss deadline) at or above which an alert fires"""
    hysteresis: float = 0.15
    """how far below the threshold P(miss) must fall before the alert may fire again"""
    critical: float = 0.85
    """P(miss) at or above which the alert is CRITICAL rather than WARNING"""

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0 or not 0.0 <= self.hysteresis < self.threshold:
            raise ValueError(f"need 0 < threshold <= 1 and 0 <= hysteresis < threshold, got {self}")


class AlertState(Protocol):
    """Which alerts are active. ``activate`` is atomic: True for exactly one caller per activation."""

    def activate(self, dedup_key: str) -> bool: ...

    def clear(self, dedup_key: str) -> None: ...


class InMemoryAlertState:
    def __init__(self) -> None:
        self.active: set[str] = set()

    def activate(self, dedup_key: str) -> bool:
        if dedup_key in self.active:
            return False
        self.active.add(dedup_key)
        return True

    def clear(self, dedup_key: str) -> None:
        self.active.discard(dedup_key)


class RedisAlertState:
    """One key per active alert (SET NX: two replicas cannot both fire the same alert)."""

    def __init__(self, url: str, namespace: str = "timeline:alerts") -> None:
        import redis

        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._ns = namespace

    def activate(self, dedup_key: str) -> bool:
        return bool(self._redis.set(f"{self._ns}:{dedup_key}", b"1", nx=True))

    def clear(self, dedup_key: str) -> None:
        self._redis.delete(f"{self._ns}:{dedup_key}")


def dedup_key(tenant_id: str, subject_kind: str, subject_id: str) -> str:
    return f"{CAPABILITY}:{KIND}:{tenant_id}:{subject_kind}:{subject_id}"


class DeadlineRiskAlerter:
    """Turns a stream of P(miss) values per subject into at most one alert per crossing."""

    def __init__(self, state: AlertState, policy: AlertPolicy = AlertPolicy()) -> None:
        self._state = state
        self._policy = policy

    def observe(self, tenant_id: str, subject_kind: str, subject_id: str, p_miss: float,
                provenance: common_pb2.Provenance | None = None) -> events_pb2.Alert | None:
        """The alert to publish for this observation, or None."""
        key = dedup_key(tenant_id, subject_kind, subject_id)
        if p_miss < self._policy.threshold - self._policy.hysteresis:
            self._state.clear(key)
            return None
        if p_miss < self._policy.threshold or not self._state.activate(key):
            return None
        severity = events_pb2.SEVERITY_CRITICAL if p_miss >= self._policy.critical else events_pb2.SEVERITY_WARNING
        return events_pb2.Alert(
            alert_id=str(uuid.uuid4()), capability=CAPABILITY, kind=KIND, severity=severity,
            subject_kind=subject_kind, subject_id=subject_id, score=p_miss, dedup_key=key,
            message=f"{subject_kind} {subject_id} will miss its deadline with probability {p_miss:.0%}",
            provenance=provenance)
