"""`FeastFeatureClient.get_online` reads through the provider's `online_read` (mesh.features._online), which
leans on Feast internals; these tests pin it to Feast's public `get_online_features` + `to_dict` field by
field (SQLite here; tests/integration/test_features_redis.py does the same on Redis), so a Feast upgrade that
changes what `online_read` returns fails here."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mesh.features import (
    DEFAULT_VIEWS,
    FeastFeatureClient,
    FeatureRecord,
    FeatureRepo,
    FeatureRepoConfig,
    TaskState,
    ViewSpec,
    replay,
)
from mesh.features._online import ViewReader, whole_seconds
from mesh.features._schema import row_from_values
from tests.unit.features._stream import T0, stream
from tests.unit.features.conftest import MakeIngestor


@dataclass(frozen=True)
class AllTypes:
    """One field of every type a row may have."""

    s: str = "dflt"
    i: int = -1
    f: float = -1.5
    b: bool = True
    ss: tuple[str, ...] = ("dflt",)
    ii: tuple[int, ...] = (-1,)
    at: datetime | None = None


ALL_TYPES_VIEW: ViewSpec[TaskState, AllTypes] = ViewSpec(
    "all_types", "task", TaskState, AllTypes, lambda s: AllTypes(), "every field type (tests)"
)


def reference_read(repo: FeatureRepo, view: ViewSpec[Any, Any], keys: Sequence[str]) -> list[FeatureRecord[Any] | None]:
    """What the client returned before the fast path: Feast's public read, converted the way it did."""
    response = repo.store().get_online_features(
        features=view.feature_refs(), entity_rows=[{view.join_key: k} for k in keys]
    )
    data = response.to_dict(include_event_timestamps=True)
    names = [name for name, _ in view.fields()]
    out: list[FeatureRecord[Any] | None] = []
    for i, key in enumerate(keys):
        stamps = [int(data[f"{n}__ts"][i] or 0) for n in names]
        if not any(stamps):
            out.append(None)
            continue
        row = row_from_values(view.row_type, {n: data[n][i] for n in names})
        out.append(FeatureRecord(key, datetime.fromtimestamp(max(stamps), UTC), row))
    return out


def assert_same(got: list[FeatureRecord[Any] | None], want: list[FeatureRecord[Any] | None]) -> None:
    """Field by field (with types: 1 == 1.0 == True would hide a wrong decoder), then as a whole."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g is None
            continue
        assert g is not None
        assert (g.entity_key, g.event_timestamp) == (w.entity_key, w.event_timestamp)
        assert g.event_timestamp.tzinfo is not None
        for f in fields(w.features):
            gv, wv = getattr(g.features, f.name), getattr(w.features, f.name)
            assert (f.name, type(gv), gv) == (f.name, type(wv), wv)
            if isinstance(wv, tuple):
                assert [type(x) for x in gv] == [type(x) for x in wv]
    assert got == want


def all_types_records(tenant: str = "t") -> list[FeatureRecord[AllTypes]]:
    """Full rows, rows of zero values (which must not turn into field defaults), a null timestamp field and
    sub-second event times."""
    at = T0 + timedelta(days=3, seconds=7)
    return [
        FeatureRecord(f"{tenant}:full", T0 + timedelta(minutes=1, microseconds=250_000),
                      AllTypes("x", 42, 2.25, True, ("a", "b"), (3, 1, 2), at)),
        FeatureRecord(f"{tenant}:zeros", T0 + timedelta(minutes=2, microseconds=999_999),
                      AllTypes("", 0, 0.0, False, (), (), None)),
        FeatureRecord(f"{tenant}:big", T0 + timedelta(minutes=3),
                      AllTypes("ünï", 2**62, -1e300, False, ("",), (-(2**62),), at)),
    ]


def parity_keys(tenant: str = "t") -> list[str]:
    """Out of order, a missing key, a duplicate, the same id in another tenant."""
    return [f"{tenant}:zeros", f"{tenant}:missing", f"{tenant}:full", "other:full", f"{tenant}:big",
            f"{tenant}:full"]


def write_out_of_order(client: FeastFeatureClient, tenant: str = "t") -> None:
    """All rows, then an older row for `full` after its newer one (what a store keeps is the store's business;
    both read paths must see the same)."""
    records = all_types_records(tenant)
    client.push(ALL_TYPES_VIEW, records)
    client.push(ALL_TYPES_VIEW, [FeatureRecord(f"{tenant}:full", T0, AllTypes("older", 1, 1.0, False, ("o",), (1,)))])


def _repo(tmp_path: Path) -> FeatureRepo:
    repo = FeatureRepo(FeatureRepoConfig(f"t_{uuid.uuid4().hex[:10]}", tmp_path / "repo", tmp_path / "off", "sqlite"),
                       views=(*DEFAULT_VIEWS, ALL_TYPES_VIEW))
    repo.apply()
    return repo


def test_every_field_type_equals_feasts_own_read(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    client = FeastFeatureClient(repo)
    write_out_of_order(client)
    keys = parity_keys()
    got = client.get_online(ALL_TYPES_VIEW, keys)
    assert_same(got, reference_read(repo, ALL_TYPES_VIEW, keys))
    by_key = {k: r for k, r in zip(keys, got, strict=True)}
    assert by_key["t:missing"] is None and by_key["other:full"] is None
    zeros = by_key["t:zeros"]
    assert zeros is not None and zeros.features == AllTypes("", 0, 0.0, False, (), (), None)
    # whole seconds (SQLite keeps no more; on Redis the client truncates as Feast's response does: see
    # tests/integration/test_features_redis.py)
    assert zeros.event_timestamp == T0 + timedelta(minutes=2)
    assert client.get_online(ALL_TYPES_VIEW, keys) == got  # nothing per call leaks into the next
    assert client.get_online(ALL_TYPES_VIEW, []) == []


def test_reads_see_new_writes_after_the_view_is_cached(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    client = FeastFeatureClient(repo)
    assert client.get_online(ALL_TYPES_VIEW, ["t:k"]) == [None]
    client.push(ALL_TYPES_VIEW, [FeatureRecord("t:k", T0, AllTypes(i=7))])
    (row,) = client.get_online(ALL_TYPES_VIEW, ["t:k"])
    assert row is not None and row.features.i == 7 and row.event_timestamp == T0


def test_every_default_view_equals_feasts_own_read(make_ingestor: MakeIngestor) -> None:
    ing = make_ingestor()
    replay(ing, stream(seed=3, tenants=2, users=4, tasks=6), batch_size=16)
    assert isinstance(ing.client, FeastFeatureClient)
    for view in DEFAULT_VIEWS:
        keys = [k.split(":", 1)[1].rstrip(":") for k in ing.aggregates.keys(view.state_type.kind)]
        assert keys
        keys = [*reversed(keys), "tenant-0:nobody", keys[0]]
        assert_same(ing.client.get_online(view, keys), reference_read(ing.repo, view, keys))


def test_values_written_another_way_take_feasts_own_conversion() -> None:
    from feast.protos.feast.types.Value_pb2 import Int32List, Int64List, StringList
    from feast.protos.feast.types.Value_pb2 import Value as V
    from feast.type_map import NULL_TIMESTAMP_INT_VALUE, feast_value_type_to_python_type

    class _Store:
        def get_feature_view(self, name: str) -> object:
            return object()

    reader = ViewReader(_Store(), ALL_TYPES_VIEW)
    cases: list[dict[str, Any]] = [
        {"s": V(string_val="x"), "i": V(int32_val=3), "f": V(float_val=0.5), "b": V(bool_val=False),
         "ss": V(string_list_val=StringList(val=["p"])), "ii": V(int32_list_val=Int32List(val=[4])),
         "at": V(unix_timestamp_val=int(NULL_TIMESTAMP_INT_VALUE))},
        {"s": V(), "i": V(int64_val=0), "ii": V(int64_list_val=Int64List(val=[])), "at": V(unix_timestamp_val=86400)},
        {},
    ]
    for values in cases:
        want = row_from_values(AllTypes, {n: feast_value_type_to_python_type(v) for n, v in values.items()})
        assert reader.row(values) == want
        assert [type(getattr(reader.row(values), f.name)) for f in fields(AllTypes)] == [
            type(getattr(want, f.name)) for f in fields(AllTypes)]


def test_rows_must_match_keys_one_to_one() -> None:
    class _Store:
        def get_feature_view(self, name: str) -> object:
            return object()

    with pytest.raises(RuntimeError, match="2 keys"):
        ViewReader(_Store(), ALL_TYPES_VIEW).records(["a", "b"], [(None, None)])


@pytest.mark.parametrize(("ts", "seconds"), [
    (None, 0),
    (datetime(1970, 1, 1, 0, 0, 1, 999_999, tzinfo=UTC), 1),
    (datetime(1970, 1, 1, 0, 0, 1, 999_999), 1),  # naive = UTC, as protobuf's FromDatetime reads it
    (datetime(1970, 1, 1, 1, 0, 0, tzinfo=UTC).astimezone(), 3600),
    (datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC), -1),  # floor, like Timestamp.seconds
])
def test_whole_seconds_matches_protobuf_timestamp(ts: datetime | None, seconds: int) -> None:
    from google.protobuf.timestamp_pb2 import Timestamp

    assert whole_seconds(ts) == seconds
    if ts is not None:
        proto = Timestamp()
        proto.FromDatetime(ts)
        assert proto.seconds == seconds
