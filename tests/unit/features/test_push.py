"""`FeastFeatureClient.push` writes through the provider's `online_write_batch` (mesh.features._push), which
leans on Feast internals; these tests pin it to Feast's public `FeatureStore.push`: both paths write the same
records under different keys and the stored protos must be byte-identical (SQLite here;
tests/integration/test_features_redis.py does the same on Redis)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mesh.features import DEFAULT_VIEWS, FeastFeatureClient, FeatureRecord, FeatureRepo, ViewSpec, record_of, replay
from mesh.features._online import ViewReader
from tests.unit.features._stream import stream
from tests.unit.features.conftest import MakeIngestor
from tests.unit.features.test_client_online import ALL_TYPES_VIEW, _repo, all_types_records

Stored = tuple[object, dict[str, bytes] | None]


def stored(repo: FeatureRepo, view: ViewSpec[Any, Any], keys: Sequence[str]) -> list[Stored]:
    """What the online store holds per key: (event time, feature name -> serialized ValueProto)."""
    reader = ViewReader(repo.store(), view)
    rows = repo.store()._get_provider().online_read(**reader._read_args(keys))
    return [(ts, None if values is None else {k: v.SerializeToString() for k, v in values.items()})
            for ts, values in rows]


def rekey(records: Sequence[FeatureRecord[Any]], prefix: str) -> list[FeatureRecord[Any]]:
    return [dataclasses.replace(r, entity_key=f"{prefix}{r.entity_key}") for r in records]


def assert_same_store(repo: FeatureRepo, view: ViewSpec[Any, Any], fast: Sequence[str], feast: Sequence[str]) -> None:
    got, want = stored(repo, view, fast), stored(repo, view, feast)
    assert all(values is not None for _, values in want)
    assert got == want


def test_every_field_type_is_stored_as_feast_push_stores_it(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    client = FeastFeatureClient(repo)
    records = all_types_records("fast")  # full rows, zero values, a null timestamp, sub-second event times
    client.push(ALL_TYPES_VIEW, records)
    client.push_with_feast(ALL_TYPES_VIEW, all_types_records("feast"))
    keys = [r.entity_key.split(":", 1)[1] for r in records]
    assert_same_store(repo, ALL_TYPES_VIEW, [f"fast:{k}" for k in keys], [f"feast:{k}" for k in keys])


def test_every_default_view_is_stored_as_feast_push_stores_it(make_ingestor: MakeIngestor) -> None:
    ing = make_ingestor()
    replay(ing, stream(seed=5, tenants=2, users=4, tasks=8), batch_size=16)  # pushes through the fast path
    assert isinstance(ing.client, FeastFeatureClient)
    for view in DEFAULT_VIEWS:
        states = [ing.aggregates.load(view.state_type, *key.split(":", 2)[1:]) for key in
                  ing.aggregates.keys(view.state_type.kind)]
        records = [record_of(view, s) for s in states if s is not None]
        assert records
        ing.client.push_with_feast(view, rekey(records, "copy-"))
        keys = [r.entity_key for r in records]
        assert_same_store(ing.repo, view, keys, [f"copy-{k}" for k in keys])


def test_a_push_replaces_the_whole_row(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    client = FeastFeatureClient(repo)
    first, second = all_types_records("t")[:2]
    client.push(ALL_TYPES_VIEW, [first])
    client.push(ALL_TYPES_VIEW, [dataclasses.replace(second, entity_key=first.entity_key)])
    (row,) = client.get_online(ALL_TYPES_VIEW, [first.entity_key])
    assert row is not None and row.features == second.features
