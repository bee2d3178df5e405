"""The live features consumer (mesh.features.ingestor_runner) on the real broker and Redis: it ingests what
is published, its rows equal a rebuild from its event log, and its fast online write stores what Feast's
own push stores."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.bus import KafkaPublisher, RunnerOptions, ensure_topics
from mesh.config import MeshSettings
from mesh.events import TopicRegistry
from mesh.features import (
    DEFAULT_VIEWS,
    FeastFeatureClient,
    FeatureIngestor,
    FeatureRecord,
    FeatureRepo,
    FeatureRepoConfig,
    RedisAggregates,
    ViewSpec,
    build_ingestor,
    ingestor_runner,
    input_topics,
    record_of,
    replay_log,
)
from tests.unit.features._stream import stream
from tests.unit.features.test_client_online import ALL_TYPES_VIEW, all_types_records
from tests.unit.features.test_push import assert_same_store

pytestmark = pytest.mark.integration


@pytest.fixture
def made(tmp_path: Path) -> Iterator[list[FeatureIngestor]]:
    out: list[FeatureIngestor] = []
    yield out
    for ing in out:
        assert isinstance(ing.aggregates, RedisAggregates)
        ing.aggregates.clear()
        ing.repo.store().teardown()


def _make(made: list[FeatureIngestor], tmp_path: Path,
          views: tuple[ViewSpec[Any, Any], ...] = DEFAULT_VIEWS) -> FeatureIngestor:
    name = f"it_{uuid.uuid4().hex[:10]}"
    repo = FeatureRepo(FeatureRepoConfig(name, tmp_path / "repo", tmp_path / "off", "redis", MeshSettings().redis.url),
                       views=views)
    repo.apply()
    made.append(build_ingestor(repo))
    return made[-1]


def _rows(ing: FeatureIngestor) -> dict[tuple[str, str], FeatureRecord[Any]]:
    out: dict[tuple[str, str], FeatureRecord[Any]] = {}
    for view in DEFAULT_VIEWS:
        for key in ing.aggregates.keys(view.state_type.kind):
            _, tenant, entity = key.split(":", 2)
            state = ing.aggregates.load(view.state_type, tenant, entity)
            assert state is not None
            out[(view.name, key)] = record_of(view, state)
    assert out
    return out


def test_the_features_consumer_ingests_the_input_topics(made: list[FeatureIngestor], tmp_path: Path,
                                                        settings: MeshSettings) -> None:
    events = stream(seed=21, tenants=2, users=4, tasks=8)
    registry = TopicRegistry(settings.kafka.topic_prefix)
    ensure_topics(settings.kafka, registry, [*input_topics(registry), "dlq"])
    pub = KafkaPublisher(settings.kafka, registry)
    for ev in events:
        pub.publish(ev)
    pub.flush(30)

    live = _make(made, tmp_path)
    runner = ingestor_runner(settings, live, group_id=f"features-{uuid.uuid4().hex[:6]}",
                             options=RunnerOptions(batch_size=7, max_messages=len(events), idle_timeout_s=30))
    stats = runner.run()
    assert (stats.handled, stats.dead_lettered) == (len(events), 0)
    expected = _rows(live)
    for view in DEFAULT_VIEWS:  # every aggregate has its online row (whole seconds: Feast's read)
        records = [rec for (name, _), rec in expected.items() if name == view.name]
        got = live.client.get_online(view, [rec.entity_key for rec in records])
        assert [r.features if r else None for r in got] == [rec.features for rec in records]

    assert live.event_log is not None
    rebuilt = _make(made, tmp_path)
    replay_log(rebuilt, live.event_log.root, batch_size=1000)
    assert _rows(rebuilt) == expected


def test_fast_push_stores_what_feast_push_stores_on_redis(made: list[FeatureIngestor], tmp_path: Path) -> None:
    ing = _make(made, tmp_path, (*DEFAULT_VIEWS, ALL_TYPES_VIEW))
    client = ing.client
    assert isinstance(client, FeastFeatureClient)
    records = all_types_records("fast")
    client.push(ALL_TYPES_VIEW, records)
    client.push_with_feast(ALL_TYPES_VIEW, [dataclasses.replace(r, entity_key=r.entity_key.replace("fast", "feast"))
                                            for r in records])
    keys = [r.entity_key for r in records]
    assert_same_store(ing.repo, ALL_TYPES_VIEW, keys, [k.replace("fast", "feast") for k in keys])
