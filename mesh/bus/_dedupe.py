"""Event-id dedupe stores: at-least-once delivery, effects applied once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import redis


class DedupeStore(Protocol):
    def seen(self, group: str, event_id: str) -> bool: ...

    def mark(self, group: str, event_id: str) -> None: ...


class InMemoryDedupe:
    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def seen(self, group: str, event_id: str) -> bool:
        return (group, event_id) in self._seen

    def mark(self, group: str, event_id: str) -> None:
        self._seen.add((group, event_id))


class RedisDedupe:
    """Seen event ids per consumer group in Redis, expiring after ``ttl_s`` (longer than topic retention)."""

    def __init__(self, url: str, *, namespace: str = "mesh", ttl_s: int = 8 * 24 * 3600) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._ns = namespace
        self._ttl = ttl_s

    def _key(self, group: str, event_id: str) -> str:
        return f"{self._ns}:dedupe:{group}:{event_id}"

    def seen(self, group: str, event_id: str) -> bool:
        return bool(self._redis.exists(self._key(group, event_id)))

    def mark(self, group: str, event_id: str) -> None:
        self._redis.set(self._key(group, event_id), 1, ex=self._ttl)

    def apply_once(self, group: str, event_id: str, effect: Callable[[Any], None]) -> bool:
        """Apply Redis writes and the seen-mark in ONE transaction: a crash leaves both or neither.

        ``effect`` queues its writes on the given pipeline. Returns False when the event was already
        applied (the writes are then not queued at all).
        """
        key = self._key(group, event_id)
        with self._redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    if pipe.exists(key):
                        return False
                    pipe.multi()
                    effect(pipe)
                    pipe.set(key, 1, ex=self._ttl)
                    pipe.execute()
                    return True
                except redis.WatchError:
                    continue
