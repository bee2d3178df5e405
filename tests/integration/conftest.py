"""Fixtures shared by the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from mesh.config import MeshSettings
from mesh.features import RedisAggregates
from services.assignment.state import ASSIGNMENT_REDUCERS, StateStore


@pytest.fixture
def assignment_state(settings: MeshSettings) -> Iterator[StateStore]:
    """The assignment state in the local Redis under a namespace of this test's own (built: it starts
    empty with its inputs); removed afterwards."""
    client = redis.Redis.from_url(settings.redis.url)
    store = RedisAggregates(client, f"it_assignment_{uuid.uuid4().hex[:10]}", reducers=ASSIGNMENT_REDUCERS)
    store.mark_built()
    yield StateStore(store)
    store.clear()
    client.close()
