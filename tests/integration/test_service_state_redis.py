"""A service's own aggregates in the real Redis: atomic with their applied-marks, built marker, outages."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from mesh.config import MeshSettings
from mesh.errors import Unavailable
from mesh.events import Envelope
from mesh.features import Ctx, RedisAggregates, Reducers, StateMissing
from tests.unit.features.test_service_state import TOY, Counted, _comment, _commented

pytestmark = pytest.mark.integration


@pytest.fixture
def client() -> Iterator[redis.Redis]:  # type: ignore[type-arg]
    r: redis.Redis = redis.Redis.from_url(MeshSettings().redis.url)  # type: ignore[type-arg]
    yield r
    r.close()


@pytest.fixture
def namespace(client: redis.Redis) -> Iterator[str]:  # type: ignore[type-arg]
    ns = f"it_state_{uuid.uuid4().hex[:10]}"
    yield ns
    RedisAggregates(client, ns).clear()


class Crash(Exception):
    pass


def test_a_crash_mid_batch_applies_nothing_and_the_redelivery_applies_once(
        client: redis.Redis, namespace: str) -> None:  # type: ignore[type-arg]
    events = [_comment(i) for i in range(6)]
    store = RedisAggregates(client, namespace, reducers=TOY)
    store.apply(events[:2])

    def crashing(ctx: Ctx, ev: Envelope) -> None:
        _commented(ctx, ev)
        if ev.event_id == events[4].event_id:
            raise Crash  # the process dies after reducing part of the batch, before the commit

    with pytest.raises(Crash):
        RedisAggregates(client, namespace, reducers=Reducers("toy", {"task_commented": crashing})).apply(events)
    state = store.load(Counted, "t", "k")
    assert state is not None and state.comments == 2
    redelivered = store.apply(events)
    state = store.load(Counted, "t", "k")
    assert state is not None and state.comments == 6
    assert (redelivered.applied, redelivered.duplicates) == (4, 2)


def test_namespaces_keep_applied_marks_apart(client: redis.Redis, namespace: str) -> None:  # type: ignore[type-arg]
    ev = _comment(0)
    a = RedisAggregates(client, namespace + ":a", reducers=TOY)
    b = RedisAggregates(client, namespace + ":b", reducers=TOY)
    try:
        assert a.apply([ev]).applied == 1 and b.apply([ev]).applied == 1  # one event, two consumers
        assert a.apply([ev]).applied == 0
    finally:
        a.clear()
        b.clear()


def test_a_lost_state_is_detected_inside_the_apply(client: redis.Redis, namespace: str) -> None:  # type: ignore[type-arg]
    store = RedisAggregates(client, namespace, reducers=TOY)
    store.mark_built()
    store.apply([_comment(0)], require_built=True)
    for key in client.scan_iter(match=f"{namespace}:*"):  # what a restart without persistence does
        client.delete(key)
    assert not store.built()
    with pytest.raises(StateMissing):
        store.apply([_comment(1)], require_built=True)
    assert store.load(Counted, "t", "k") is None


def test_redis_down_is_unavailable_not_poison() -> None:
    down: redis.Redis = redis.Redis(port=1, socket_connect_timeout=0.5)  # type: ignore[type-arg]
    store = RedisAggregates(down, "nowhere", reducers=TOY)
    with pytest.raises(Unavailable):
        store.apply([_comment(0)])
    with pytest.raises(Unavailable):
        store.load(Counted, "t", "k")
