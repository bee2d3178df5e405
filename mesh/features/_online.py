"""The fast online read behind `FeastFeatureClient.get_online`: one `online_read` on the Feast provider.

`FeatureStore.get_online_features` resolves the feature refs in the registry, converts the keys, builds a
`GetOnlineFeaturesResponse` proto and `to_dict` converts every value back to Python: ~5x the cost of the
Redis round trip it wraps. This module calls the provider's `online_read` (the `OnlineStore` interface that
Feast's online stores implement) with the `FeatureView` and decoders resolved once per view, and decodes each
`ValueProto` straight into the typed row.

Results equal `get_online_features` + `to_dict` exactly, including its quirks (a row is missing when its
event time is 0 s; event times are whole seconds). tests/unit/features/test_client_online.py and
tests/integration/test_features_redis.py compare the two field by field, so a Feast change underneath fails
there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from mesh.errors import translate_infra_errors
from mesh.features._schema import FeastType, FeatureRecord, ViewSpec, _coerce

R = TypeVar("R")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)

Decoder = Callable[[Any], object]
"""The payload of a ValueProto's `val` oneof -> the row field's value (None: take the field default)."""


def _timestamp_decoder(null: int) -> Decoder:
    def decode(seconds: int) -> datetime | None:
        return None if seconds == null else datetime.fromtimestamp(seconds, UTC)

    return decode


def _list_decoder(cast: Callable[[Any], object]) -> Decoder:
    def decode(value: Any) -> tuple[object, ...]:
        return tuple(map(cast, value.val))

    return decode


def fast_decoders(null_timestamp: int) -> dict[FeastType, tuple[str, Decoder]]:
    """Feast type -> (the `val` oneof Feast writes it as, decoder). Anything else takes the generic path."""
    return {
        "String": ("string_val", str),
        "Int64": ("int64_val", int),
        "Float64": ("double_val", float),
        "Bool": ("bool_val", bool),
        "Array(String)": ("string_list_val", _list_decoder(str)),
        "Array(Int64)": ("int64_list_val", _list_decoder(int)),
        "UnixTimestamp": ("unix_timestamp_val", _timestamp_decoder(null_timestamp)),
    }


def whole_seconds(ts: datetime | None) -> int:
    """Event time -> whole seconds since the epoch, as Feast's response proto holds it (naive = UTC)."""
    if ts is None:
        return 0
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // _SECOND


class ViewIO(Generic[R]):
    """What online reads and writes of one view share: the Feast objects, resolved once per view."""

    def __init__(self, store: Any, view: ViewSpec[Any, R]) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self.view = view
        self.store = store
        self._table = store.get_feature_view(view.name)
        self._entity_key = EntityKey
        self._value = Value
        self._join_keys = [view.join_key]


class ViewReader(ViewIO[R]):
    """Online reads of one view through one Feast store; everything that does not depend on the keys is
    resolved here, once."""

    def __init__(self, store: Any, view: ViewSpec[Any, R]) -> None:
        from feast.type_map import NULL_TIMESTAMP_INT_VALUE, feast_value_type_to_python_type

        super().__init__(store, view)
        self._names = [name for name, _ in view.fields()]
        self._generic = feast_value_type_to_python_type
        fast = fast_decoders(int(NULL_TIMESTAMP_INT_VALUE))
        self._fields = [(name, kind, *fast[kind]) for name, kind in view.fields()]

    def _entity_keys(self, keys: Sequence[str]) -> list[Any]:
        ek, value, join_keys = self._entity_key, self._value, self._join_keys
        return [ek(join_keys=join_keys, entity_values=[value(string_val=k)]) for k in keys]

    def _read_args(self, keys: Sequence[str]) -> dict[str, Any]:
        # A fresh list of names each call: the Redis store appends its timestamp field to it.
        return {"config": self.store.config, "table": self._table, "entity_keys": self._entity_keys(keys),
                "requested_features": list(self._names)}

    @translate_infra_errors("feast online read")  # Redis down: Unavailable (retried), never poison
    def read(self, keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        rows = self.store._get_provider().online_read(**self._read_args(keys))
        return self.records(keys, rows)

    @translate_infra_errors("feast online read")
    async def read_async(self, keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        rows = await self.store._get_provider().online_read_async(**self._read_args(keys))
        return self.records(keys, rows)

    def records(self, keys: Sequence[str], rows: Sequence[tuple[datetime | None, dict[str, Any] | None]]
                ) -> list[FeatureRecord[R] | None]:
        """`online_read` rows (event time, feature name -> ValueProto), one per key, -> records."""
        if len(rows) != len(keys):
            raise RuntimeError(f"online_read returned {len(rows)} rows for {len(keys)} keys")
        out: list[FeatureRecord[R] | None] = []
        for key, (ts, values) in zip(keys, rows, strict=True):
            seconds = whole_seconds(ts)
            if values is None or seconds == 0:
                out.append(None)
            else:
                out.append(FeatureRecord(key, datetime.fromtimestamp(seconds, UTC), self.row(values)))
        return out

    def row(self, values: dict[str, Any]) -> R:
        """Feature name -> ValueProto, to the typed row; absent or null values take the field default."""
        kwargs: dict[str, object] = {}
        for name, kind, attr, decode in self._fields:
            proto = values.get(name)
            if proto is None:
                continue
            which = proto.WhichOneof("val")
            if which is None:
                continue
            if which == attr:
                value = decode(getattr(proto, attr))
            else:  # written some other way (an older Feast, another writer): Feast's own conversion
                generic = self._generic(proto)
                value = None if generic is None else _coerce(kind, generic)
            if value is not None:
                kwargs[name] = value
        return self.view.row_type(**kwargs)
