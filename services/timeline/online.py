"""Wiring of the timeline state in the service: the Redis aggregate store (with the records of the
service's own outputs) and its rebuild from the inputs when it is missing."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.events import TopicRegistry
from mesh.features import Rebuilt, RedisAggregates, rebuild_from_inputs
from services.timeline.alerts import AlertPolicy, output_reducers
from services.timeline.state import TimelineState

if TYPE_CHECKING:
    from mesh.config import MeshSettings

TOPICS = ("tasks", "projects", "users")
"""The input topics of the service (logical names)."""


def open_state(settings: MeshSettings, policy: AlertPolicy) -> TimelineState:
    """The service's state in Redis under ``<namespace>:timeline`` (applied-marks in the same namespace)."""
    import redis

    client = redis.Redis.from_url(settings.redis.url, socket_connect_timeout=5, socket_timeout=5)
    return TimelineState(RedisAggregates(client, f"{settings.namespace}:timeline", reducers=output_reducers(policy)))


def rebuilder(state: TimelineState, settings: MeshSettings, event_log_dir: Path | None = None
              ) -> Callable[[], Rebuilt]:
    """Rebuild ``state`` from the offline event log and the retained input topics, then mark it built."""
    registry = TopicRegistry(settings.kafka.topic_prefix)
    return partial(rebuild_from_inputs, state.store, settings.kafka, [registry.physical(t) for t in TOPICS],
                   event_log_dir)
