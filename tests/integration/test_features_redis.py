"""Features against the real local Redis (and Kafka for the backfill); each test has its own project."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer
from sunday.ml.v1 import events_pb2 as e

from mesh.config import MeshSettings
from mesh.events import TopicRegistry, encode, partition_key
from mesh.features import (
    DEFAULT_VIEWS,
    TASK_VIEW,
    USER_VIEW,
    FeastFeatureClient,
    FeatureIngestor,
    FeatureRecord,
    FeatureRepo,
    FeatureRepoConfig,
    RedisAggregates,
    ViewSpec,
    build_ingestor,
    record_of,
    replay,
    replay_log,
    replay_topic,
)
from mesh.features._push import ViewWriter
from tests.unit.features._stream import T0, env, stream
from tests.unit.features.test_client_online import (
    ALL_TYPES_VIEW,
    all_types_records,
    assert_same,
    parity_keys,
    reference_read,
    write_out_of_order,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def redis_ingestors(tmp_path: Path) -> Iterator[list[FeatureIngestor]]:
    """Call `make()` for a fresh Redis-backed store; everything under its namespace is removed afterwards."""
    made: list[FeatureIngestor] = []
    yield made
    for ing in made:
        assert isinstance(ing.aggregates, RedisAggregates)
        ing.aggregates.clear()
        ing.repo.store().teardown()


def _make(made: list[FeatureIngestor], tmp_path: Path) -> FeatureIngestor:
    repo = FeatureRepo(FeatureRepoConfig(f"it_{uuid.uuid4().hex[:10]}", tmp_path / "repo", tmp_path / "off", "redis",
                                         MeshSettings().redis.url))
    repo.apply()
    made.append(build_ingestor(repo))
    return made[-1]


def _online(ing: FeatureIngestor) -> dict[tuple[str, str], FeatureRecord[object] | None]:
    out: dict[tuple[str, str], FeatureRecord[object] | None] = {}
    for view in DEFAULT_VIEWS:
        keys = [k.split(":", 1)[1].rstrip(":") for k in ing.aggregates.keys(view.state_type.kind)]
        out.update(zip([(view.name, k) for k in keys], ing.client.get_online(view, keys), strict=True))
    assert out
    return out


def test_older_event_does_not_overwrite_newer_on_redis(redis_ingestors: list[FeatureIngestor],
                                                         tmp_path: Path) -> None:
    ing = _make(redis_ingestors, tmp_path)
    ing.handle(env("t", e.TaskStatusChanged(task_id="k", to_status=e.TASK_STATUS_IN_REVIEW), T0 + timedelta(hours=2)))
    ing.handle(env("t", e.TaskStatusChanged(task_id="k", to_status=e.TASK_STATUS_IN_PROGRESS), T0))
    (row,) = ing.client.get_online(TASK_VIEW, ["t:k"])
    assert row is not None
    assert row.features.status == e.TASK_STATUS_IN_REVIEW and row.features.n_status_changes == 2
    assert row.event_timestamp == T0 + timedelta(hours=2)


def test_same_event_concurrently_is_applied_once(redis_ingestors: list[FeatureIngestor], tmp_path: Path) -> None:
    ing = _make(redis_ingestors, tmp_path)
    other = build_ingestor(ing.repo)  # a second consumer process on the same store
    ev = env("t", e.TaskCommented(task_id="k", project_id="p", comment_id="c", author_id="u"), T0)
    barrier = threading.Barrier(2)

    def run(target: FeatureIngestor) -> None:
        barrier.wait()
        target.handle(ev)

    threads = [threading.Thread(target=run, args=(x,)) for x in (ing, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    (row,) = ing.client.get_online(TASK_VIEW, ["t:k"])
    assert row is not None and row.features.n_comments == 1


def test_live_equals_replay_of_log_and_of_kafka_topic(redis_ingestors: list[FeatureIngestor], tmp_path: Path) -> None:
    events = stream(seed=11, tenants=2, users=4, tasks=6)
    live = _make(redis_ingestors, tmp_path)
    for i in range(0, len(events), 5):  # poll-sized batches, as the consumer runner delivers them
        live.handle_batch([*map(_logged, events[i: i + 5])])
    expected = _online(live)
    assert live.event_log is not None

    from_log = _make(redis_ingestors, tmp_path)
    replay_log(from_log, live.event_log.root)
    twice = replay_log(from_log, live.event_log.root)
    assert _online(from_log) == expected and twice.applied == 0

    settings = MeshSettings()
    topic = f"test-{uuid.uuid4().hex[:8]}.sunday.all"
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for ev in events:  # one partition: total order, as the live run saw it
        producer.produce(topic, encode(ev), key=partition_key(ev))
    assert producer.flush(30) == 0
    from_topic = _make(redis_ingestors, tmp_path)
    stats = replay_topic(from_topic, settings.kafka, topic, 0)
    assert stats.events == len(events) and stats.invalid == 0
    assert _online(from_topic) == expected
    assert from_topic.event_log is not None and from_topic.event_log.count() == len(events)


def _logged(ev: Any) -> Any:
    from mesh.features import LoggedEvent

    return LoggedEvent(ev)


@pytest.mark.parametrize("n", [1, 64])
def test_online_read_batches_sync_and_async(redis_ingestors: list[FeatureIngestor], tmp_path: Path, n: int) -> None:
    ing = _make(redis_ingestors, tmp_path)
    replay(ing, [env("t", e.UserActivity(user_id=f"u{i}", action="login"), T0 + timedelta(minutes=i))
                 for i in range(n)])
    keys = [f"t:u{i}" for i in range(n)]
    client = FeastFeatureClient(ing.repo)
    rows = client.get_online(USER_VIEW, keys)
    rows_async = asyncio.run(client.get_online_async(USER_VIEW, keys))
    assert rows == rows_async
    assert_same(rows, reference_read(ing.repo, USER_VIEW, keys))
    for i, row in enumerate(rows):
        assert row is not None and row.features.last_active == T0 + timedelta(minutes=i)
    assert client.get_online(USER_VIEW, ["other-tenant:u0"]) == [None]


def test_fast_read_equals_feasts_own_read_on_redis(redis_ingestors: list[FeatureIngestor], tmp_path: Path) -> None:
    """The client reads via the provider's online_read; Feast's public get_online_features must agree, field by
    field, sync and async, for every field type, a missing key, an out-of-order write and every default view."""
    repo = FeatureRepo(FeatureRepoConfig(f"it_{uuid.uuid4().hex[:10]}", tmp_path / "repo", tmp_path / "off", "redis",
                                         MeshSettings().redis.url), views=(*DEFAULT_VIEWS, ALL_TYPES_VIEW))
    repo.apply()
    ing = build_ingestor(repo)
    redis_ingestors.append(ing)
    client = FeastFeatureClient(repo)
    write_out_of_order(client)
    replay(ing, stream(seed=4, tenants=2, users=4, tasks=6), batch_size=16)
    cases: list[tuple[ViewSpec[Any, Any], list[str]]] = [(ALL_TYPES_VIEW, parity_keys())]
    for view in DEFAULT_VIEWS:
        ids = [k.split(":", 1)[1].rstrip(":") for k in ing.aggregates.keys(view.state_type.kind)]
        assert ids
        cases.append((view, [*reversed(ids), "tenant-0:nobody", ids[0]]))

    async def read_async() -> list[list[FeatureRecord[Any] | None]]:  # one loop: Feast's async client keeps its own
        return [await client.get_online_async(view, keys) for view, keys in cases]

    got_async = asyncio.run(read_async())
    for (view, keys), rows_async in zip(cases, got_async, strict=True):
        want = reference_read(repo, view, keys)
        assert_same(client.get_online(view, keys), want)
        assert_same(rows_async, want)
    want = reference_read(repo, ALL_TYPES_VIEW, parity_keys())
    assert want[1] is None and want[3] is None and all(r is not None for r in (want[0], want[2], want[4]))


def _hashes(repo: FeatureRepo, view: ViewSpec[Any, Any], keys: Sequence[str]) -> list[dict[bytes, bytes]]:
    """The raw Redis hashes of `keys` (Feast's key encoding, computed by Feast)."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    store = repo.store()
    client = store._get_provider().online_store._get_client(store.config.online_store)
    redis_keys = [_redis_key(store.config.project, EntityKey(join_keys=[view.join_key],
                                                             entity_values=[Value(string_val=k)]),
                             entity_key_serialization_version=store.config.entity_key_serialization_version)
                  for k in keys]
    with client.pipeline(transaction=False) as pipe:
        for key in redis_keys:
            pipe.hgetall(key)
        hashes: list[dict[bytes, bytes]] = pipe.execute()
    with client.pipeline(transaction=False) as pipe:  # clean for the next writer
        for key in redis_keys:
            pipe.delete(key)
        pipe.execute()
    return hashes


def test_pipelined_rows_are_the_bytes_feasts_online_write_batch_writes(redis_ingestors: list[FeatureIngestor],
                                                                        tmp_path: Path) -> None:
    """The ingestor writes Redis rows itself (every view of a batch in one pipeline); Feast's own
    `online_write_batch` of the same records must leave the same hashes, field by field and byte for byte, and
    Feast's public `get_online_features` must read the rows back: every field type and every default view."""
    repo = FeatureRepo(FeatureRepoConfig(f"it_{uuid.uuid4().hex[:10]}", tmp_path / "repo", tmp_path / "off", "redis",
                                         MeshSettings().redis.url), views=(*DEFAULT_VIEWS, ALL_TYPES_VIEW))
    repo.apply()
    ing = build_ingestor(repo)
    redis_ingestors.append(ing)
    replay(ing, stream(seed=6, tenants=2, users=4, tasks=6), batch_size=16)
    batches: list[tuple[ViewSpec[Any, Any], list[FeatureRecord[Any]]]] = [(ALL_TYPES_VIEW, all_types_records())]
    for view in DEFAULT_VIEWS:
        states = [ing.aggregates.load(view.state_type, *key.split(":", 2)[1:])
                  for key in ing.aggregates.keys(view.state_type.kind)]
        batches.append((view, [record_of(view, s) for s in states if s is not None]))
        assert batches[-1][1]
    store = repo.store()
    client = FeastFeatureClient(repo)
    for view, records in batches:
        writer = ViewWriter(store, view)
        assert writer.redis is not None  # the pipelined path is the one under test
        keys = [r.entity_key for r in records]
        _hashes(repo, view, keys)  # other views of the entity share its hash: start both writers from nothing
        store._get_provider().online_write_batch(store.config, writer._table, writer.rows(records), None)
        by_feast = _hashes(repo, view, keys)
        assert all(by_feast)
        client.push_many([(view, records)])
        ours = _hashes(repo, view, keys)
        for got, expected in zip(ours, by_feast, strict=True):
            assert (view.name, sorted(got)) == (view.name, sorted(expected))
            for field, data in expected.items():
                assert (field, got[field]) == (field, data)
    client.push_many(batches)  # all views in one call, then read back through Feast's public read
    for view, records in batches:
        keys = [r.entity_key for r in records]
        want: list[FeatureRecord[Any] | None] = [
            dataclasses.replace(r, event_timestamp=r.event_timestamp.replace(microsecond=0)) for r in records]
        assert_same(reference_read(repo, view, keys), want)


def test_topic_registry_names_features_as_consumer() -> None:
    topics = FeatureIngestor.topics(TopicRegistry("x."))
    assert "x.sunday.tasks" in topics and all(t.startswith("x.sunday.") for t in topics)
