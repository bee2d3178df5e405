"""The assignment state rebuilt from the retained input topics (what the service does when its Redis state
is missing): a simulated month read topic by topic, out of time order, ends in the state a time-ordered
replay builds, and the store is marked built. The rebuild's duration is printed (no timing assertion)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from mesh.bus import KafkaPublisher, ensure_topics
from mesh.config import MeshSettings
from mesh.events import TopicRegistry, occurred_at
from mesh.features import InMemoryAggregates, RedisAggregates
from services.assignment.online import TOPICS, rebuilder
from services.assignment.state import ASSIGNMENT_REDUCERS, EVENT_TYPES, StateStore
from simulator import SimConfig, Simulation

pytestmark = pytest.mark.integration
MONTH = SimConfig(tenants=2, users_per_tenant=30, weeks=4, seed=3)


@pytest.fixture
def state(settings: MeshSettings) -> Iterator[StateStore]:
    client = redis.Redis.from_url(settings.redis.url)
    store = RedisAggregates(client, f"it_rebuild_{uuid.uuid4().hex[:10]}", reducers=ASSIGNMENT_REDUCERS)
    yield StateStore(store)
    store.clear()
    client.close()


@pytest.mark.timeout(600)
def test_a_month_rebuilt_from_the_topics_equals_the_replay(settings: MeshSettings, state: StateStore) -> None:
    events = [ev for ev in Simulation(MONTH).events() if ev.type in EVENT_TYPES]
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, list(TOPICS))
    publisher = KafkaPublisher(settings.kafka, registry)
    for ev in events:
        publisher.publish(ev)
    publisher.flush()
    publisher.close()

    assert not state.store.built()
    started = time.perf_counter()
    done = rebuilder(state, settings).ensure_built()
    seconds = time.perf_counter() - started
    print(f"rebuilt a simulated month: {len(events)} events ({done and done.applied} applied) in {seconds:.1f}s")
    assert done is not None and state.store.built()
    assert rebuilder(state, settings).ensure_built() is None  # built: nothing to do

    replay = StateStore(InMemoryAggregates(ASSIGNMENT_REDUCERS))
    for ev in sorted(events, key=occurred_at):
        replay.apply([ev])
    for tenant in sorted({ev.tenant_id for ev in events}):
        ids = replay.active_ids(tenant)
        assert ids and state.active_ids(tenant) == ids
        assert state.people(tenant, ids) == replay.people(tenant, ids)
    assert done.applied == len({ev.event_id for ev in events})  # the simulator's duplicates applied once
