"""The assignment rows the ranker reads, straight from the service's committed state, and the wiring of
that state (Redis store, rebuild from the inputs).

The service, the offline replay that builds the training set and the benchmark all read through
:class:`OnlineFeatures` over a :class:`~services.assignment.state.StateStore`, so the model is trained on
exactly the rows it is served. Reading the state itself (not a copy pushed to an online store) means a
ranking never sees rows older than the state just committed: no push to lose in a crash, and no write
skipped because its event time equals the stored one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mesh.features import Rebuilder, RedisAggregates
from services.assignment.features import PersonFeatures, TaskFeatures
from services.assignment.state import ASSIGNMENT_REDUCERS, StateStore

if TYPE_CHECKING:
    from mesh.config import MeshSettings

TOPICS = ("tasks", "users", "projects")
"""The input topics of the service (logical names)."""


class OnlineFeatures:
    """Typed reads of the assignment rows (one batched read for any number of candidates)."""

    def __init__(self, state: StateStore) -> None:
        self.state = state

    def people(self, tenant_id: str, user_ids: Sequence[str]) -> list[PersonFeatures]:
        """The rows of ``user_ids`` that exist, in that order: one batched read."""
        return self.state.people(tenant_id, user_ids)

    def task(self, tenant_id: str, task_id: str) -> TaskFeatures | None:
        return self.state.task(tenant_id, task_id)


def candidate_rows(state: StateStore, online: OnlineFeatures, tenant_id: str,
                   candidate_ids: Sequence[str] = ()) -> list[PersonFeatures]:
    """The candidates' rows (one batched read); the tenant's active people by default. The ranker and the
    training replay both read candidates through here."""
    return online.people(tenant_id, list(candidate_ids) or state.active_ids(tenant_id))


def state_namespace(settings: MeshSettings) -> str:
    """Where the service's state lives in Redis (per deployment namespace)."""
    return f"{settings.namespace}:assignment"


def open_state(settings: MeshSettings) -> StateStore:
    """The service's state in Redis (applied-marks under the same namespace)."""
    import redis

    client = redis.Redis.from_url(settings.redis.url, socket_connect_timeout=5, socket_timeout=5)
    return StateStore(RedisAggregates(client, state_namespace(settings), reducers=ASSIGNMENT_REDUCERS))


def rebuilder(state: StateStore, settings: MeshSettings, event_log_dir: Path | None = None) -> Rebuilder:
    """Rebuilds the state from the offline event log and the retained input topics (the state's source of
    truth), then marks it built; the service calls it at start and whenever the state is found lost."""
    return Rebuilder.of(state.store, settings, TOPICS, event_log_dir)
