"""Event-id dedupe stores: at-least-once delivery, effects applied once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import redis

from mesh.errors import translate_infra_errors


class DedupeStore(Protocol):
    def seen_many(self, group: str, event_ids: list[str]) -> set[str]:
        """The ids among ``event_ids`` already handled by ``group`` (one round trip per batch)."""

    def mark_many(self, group: str, event_ids: list[str]) -> None:
        """Record ids as handled (called before the batch's offsets are committed)."""


class InMemoryDedupe:
    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()

    def seen_many(self, group: str, event_ids: list[str]) -> set[str]:
        return {i for i in event_ids if (group, i) in self._seen}

    def mark_many(self, group: str, event_ids: list[str]) -> None:
        self._seen.update((group, i) for i in event_ids)


class RedisDedupe:
    """Seen event ids per consumer group in Redis, expiring after ``ttl_s`` (longer than topic retention).

    A Redis outage comes out as :class:`mesh.errors.Unavailable` (the runner holds the batch and retries)."""

    def __init__(self, url: str, *, namespace: str = "mesh", ttl_s: int = 8 * 24 * 3600) -> None:
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
        self._ns = namespace
        self._ttl = ttl_s

    def _key(self, group: str, event_id: str) -> str:
        return f"{self._ns}:dedupe:{group}:{event_id}"

    @translate_infra_errors("redis dedupe")
    def seen_many(self, group: str, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        found = self._redis.mget([self._key(group, i) for i in event_ids])
        return {i for i, v in zip(event_ids, found, strict=True) if v is not None}

    @translate_infra_errors("redis dedupe")
    def mark_many(self, group: str, event_ids: list[str]) -> None:
        if event_ids:
            with self._redis.pipeline(transaction=False) as pipe:
                for i in event_ids:
                    pipe.set(self._key(group, i), 1, ex=self._ttl)
                pipe.execute()

    @translate_infra_errors("redis dedupe")
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
