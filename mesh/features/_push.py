"""The fast online write behind `FeastFeatureClient.push`: Feast's own row format, without `FeatureStore.push`.

`FeatureStore.push` looks the push source's feature views up in the registry (deserialising every view, with
runtime type checks, on each call), builds a pandas frame, converts it to Arrow and back to one `ValueProto`
per value, then calls the provider's `online_write_batch`: measured at ~65% of the feature ingestor's time.
This module resolves each view's Feast objects once and encodes each typed row field straight into the
`ValueProto` Feast would have written.

On Feast's Redis online store (with ``skip_dedup``: ordering is guarded by the aggregates, rows are full
states) it goes further: the store's `online_write_batch` re-serialises every value, hashes every feature
name (murmur3) and builds the entity key on every row, and runs one pipeline per view. Here the hashed field
names and entity keys are computed once, the serialised values are cached (rows repeat most values: zero
counts, roles, ids), and the rows of every view of a batch go out in ONE pipelined call
(:func:`write_many`): the same ``HSET key {_ts:<view>: Timestamp, mmh3(<view>:<feature>): ValueProto}``
(+ ``EXPIRE`` with a key TTL) that `online_write_batch` sends. Any other store (SQLite, Redis without
``skip_dedup``) goes through the provider's `online_write_batch`.

What lands in the store equals `FeatureStore.push` and `online_write_batch` of the same records, field by
field; tests/unit/features/test_push.py and tests/integration/test_features_redis.py compare them, so a Feast
change underneath fails there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from mesh.errors import translate_infra_errors
from mesh.features._online import ViewIO
from mesh.features._schema import FeastType, FeatureRecord, ViewSpec

R = TypeVar("R")

Encoder = Callable[[Any], Any]
"""A row field's value -> the `ValueProto` Feast stores for it."""

RedisRow = tuple[bytes, dict[Any, bytes]]
"""(Redis key of the entity, hash field -> serialised value): one HSET."""


def _encoders(value: Any, null_timestamp: int) -> dict[FeastType, Encoder]:
    from feast.protos.feast.types.Value_pb2 import Int64List, StringList

    def timestamp(v: datetime | None) -> Any:
        if v is None:
            return value(unix_timestamp_val=null_timestamp)
        aware = v if v.tzinfo is not None else v.replace(tzinfo=UTC)
        return value(unix_timestamp_val=int(aware.timestamp()))

    return {
        "String": lambda v: value(string_val=v),
        "Int64": lambda v: value(int64_val=v),
        "Float64": lambda v: value(double_val=v),
        "Bool": lambda v: value(bool_val=v),
        "Array(String)": lambda v: value(string_list_val=StringList(val=v)),
        "Array(Int64)": lambda v: value(int64_list_val=Int64List(val=v)),
        "UnixTimestamp": timestamp,
    }


_CACHE_MAX = 50_000
"""Encoded values (and entity keys) kept per view before the cache starts over."""


class _RedisLayout:
    """How Feast's Redis online store lays one view's rows out (resolved once)."""

    def __init__(self, store: Any, table: Any, view: ViewSpec[Any, Any]) -> None:
        from feast.infra.online_stores.helpers import _mmh3, _redis_key
        from feast.infra.online_stores.redis import _versioned_fv_name

        config = store.config
        fv_name = _versioned_fv_name(table, config)
        self.client = store._get_provider().online_store._get_client(config.online_store)
        self.ts_field = f"_ts:{fv_name}"
        self.field_keys: dict[str, bytes] = {name: _mmh3(f"{fv_name}:{name}") for name, _ in view.fields()}
        self.ttl: int | None = config.online_store.key_ttl_seconds or None
        project, version = config.project, config.entity_key_serialization_version

        def redis_key(entity_key: Any) -> bytes:
            key: bytes = _redis_key(project, entity_key, entity_key_serialization_version=version)
            return key

        self.redis_key = redis_key


def _redis_layout(store: Any, table: Any, view: ViewSpec[Any, Any]) -> _RedisLayout | None:
    """The layout when the online store is Feast's Redis store writing without a read-before-write; else None."""
    from feast.infra.online_stores.redis import RedisOnlineStore, RedisOnlineStoreConfig

    online = store.config.online_store
    if not isinstance(online, RedisOnlineStoreConfig) or not online.skip_dedup:
        return None
    if not isinstance(store._get_provider().online_store, RedisOnlineStore):
        return None
    return _RedisLayout(store, table, view)


class ViewWriter(ViewIO[R]):
    """Online writes of one view through one Feast store; the view's Feast objects are resolved once."""

    def __init__(self, store: Any, view: ViewSpec[Any, R]) -> None:
        from feast.type_map import NULL_TIMESTAMP_INT_VALUE

        super().__init__(store, view)
        encoders = _encoders(self._value, int(NULL_TIMESTAMP_INT_VALUE))
        self._fields = [(name, kind, encoders[kind]) for name, kind in view.fields()]
        self._cache: dict[tuple[str, object], Any] = {}
        self._bytes: dict[tuple[str, object], bytes] = {}
        self._keys: dict[str, bytes] = {}
        self.redis = _redis_layout(store, self._table, view)
        """Set when rows can go straight to Redis (:meth:`redis_rows`, :func:`write_many`)."""

    def rows(self, records: Sequence[FeatureRecord[R]]) -> list[tuple[Any, dict[str, Any], datetime, None]]:
        """Records -> the `(entity key, feature name -> ValueProto, event time, created time)` rows
        `online_write_batch` takes."""
        fields = self._fields
        if len(self._cache) > _CACHE_MAX:
            self._cache.clear()
        cache = self._cache
        out: list[tuple[Any, dict[str, Any], datetime, None]] = []
        for rec in records:
            row = rec.features
            values: dict[str, Any] = {}
            for name, kind, encode in fields:
                v = getattr(row, name)
                proto = cache.get((kind, v))
                if proto is None:
                    proto = cache[(kind, v)] = encode(v)
                values[name] = proto
            out.append((self._key_proto(rec.entity_key), values, rec.event_timestamp, None))
        return out

    def _key_proto(self, key: str) -> Any:
        return self._entity_key(join_keys=self._join_keys, entity_values=[self._value(string_val=key)])

    def redis_rows(self, records: Sequence[FeatureRecord[R]]) -> list[RedisRow]:
        """Records -> the HSETs Feast's Redis `online_write_batch` sends for them (:attr:`redis` layouts only):
        the same key, hash fields and serialised bytes."""
        from google.protobuf.timestamp_pb2 import Timestamp

        layout = self.redis
        if layout is None:
            raise TypeError(f"{self.view.name}: the online store is not Feast's Redis store with skip_dedup")
        if len(self._bytes) > _CACHE_MAX:
            self._bytes.clear()
        if len(self._keys) > _CACHE_MAX:
            self._keys.clear()
        cache, keys, ts_field = self._bytes, self._keys, layout.ts_field
        fields = [(name, layout.field_keys[name], kind, encode) for name, kind, encode in self._fields]
        out: list[RedisRow] = []
        for rec in records:
            at = rec.event_timestamp
            ts = Timestamp()
            ts.FromDatetime(at if at.tzinfo is not None else at.replace(tzinfo=UTC))
            mapping: dict[Any, bytes] = {ts_field: ts.SerializeToString()}
            row = rec.features
            for name, field_key, kind, encode in fields:
                v = getattr(row, name)
                data = cache.get((kind, v))
                if data is None:
                    data = cache[(kind, v)] = encode(v).SerializeToString()
                mapping[field_key] = data
            key = keys.get(rec.entity_key)
            if key is None:
                key = keys[rec.entity_key] = layout.redis_key(self._key_proto(rec.entity_key))
            out.append((key, mapping))
        return out

    def write(self, records: Sequence[FeatureRecord[R]]) -> None:
        if records:
            write_many([(self, records)])


Batch = tuple[ViewWriter[Any], Sequence[FeatureRecord[Any]]]


@translate_infra_errors("feast online write")  # Redis down: Unavailable (retried), never poison
def write_many(batches: Sequence[Batch]) -> None:
    """Every view's records of a batch: one pipelined call for all Redis views (several views of one store
    share its client), `online_write_batch` per view for any other store."""
    pipes: dict[int, Any] = {}
    for writer, records in batches:
        if not records:
            continue
        layout = writer.redis
        if layout is None:
            store = writer.store
            store._get_provider().online_write_batch(store.config, writer._table, writer.rows(records), None)
            continue
        pipe = pipes.get(id(layout.client))
        if pipe is None:
            pipe = pipes[id(layout.client)] = layout.client.pipeline(transaction=False)
        for key, mapping in writer.redis_rows(records):
            pipe.hset(key, mapping=mapping)
            if layout.ttl:
                pipe.expire(name=key, time=layout.ttl)
    for pipe in pipes.values():
        with pipe:
            pipe.execute()
