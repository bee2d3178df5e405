"""`FeatureClient`: the port services read features through, a Feast adapter and an in-memory fake."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from mesh.features._frame import records_to_frame
from mesh.features._repo import FeatureRepo
from mesh.features._schema import FeatureRecord, ViewSpec, row_from_values

R = TypeVar("R")


class FeatureClient(Protocol):
    """Batched online reads and pushes of typed feature rows."""

    def get_online(self, view: ViewSpec[Any, R], entity_keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        """One result per key, in order; None where the entity has no row. Timestamps are the rows' event times."""
        ...

    def push(self, view: ViewSpec[Any, R], records: Sequence[FeatureRecord[R]]) -> None:
        """Write rows to the online store (the caller guarantees they are the newest state)."""
        ...


class FeastFeatureClient:
    """FeatureClient over a Feast store (Redis or SQLite online store)."""

    def __init__(self, repo: FeatureRepo) -> None:
        self._repo = repo

    def get_online(self, view: ViewSpec[Any, R], entity_keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        if not entity_keys:
            return []
        response = self._repo.store().get_online_features(
            features=view.feature_refs(), entity_rows=[{view.join_key: k} for k in entity_keys]
        )
        return _records(view, entity_keys, response.to_dict(include_event_timestamps=True))

    async def get_online_async(
        self, view: ViewSpec[Any, R], entity_keys: Sequence[str]
    ) -> list[FeatureRecord[R] | None]:
        """Async read (Redis online store only; Feast's SQLite store has no async path)."""
        if not entity_keys:
            return []
        response = await self._repo.store().get_online_features_async(
            features=view.feature_refs(), entity_rows=[{view.join_key: k} for k in entity_keys]
        )
        return _records(view, entity_keys, response.to_dict(include_event_timestamps=True))

    def push(self, view: ViewSpec[Any, R], records: Sequence[FeatureRecord[R]]) -> None:
        if not records:
            return
        from feast.data_source import PushMode

        self._repo.store().push(view.push_source, records_to_frame(view, records), to=PushMode.ONLINE)


def _records(view: ViewSpec[Any, R], keys: Sequence[str], data: dict[str, list[Any]]) -> list[FeatureRecord[R] | None]:
    names = [name for name, _ in view.fields()]
    out: list[FeatureRecord[R] | None] = []
    for i, key in enumerate(keys):
        stamps = [int(data[f"{n}__ts"][i] or 0) for n in names]
        if not any(stamps):
            out.append(None)
            continue
        row = row_from_values(view.row_type, {n: data[n][i] for n in names})
        out.append(FeatureRecord(key, datetime.fromtimestamp(max(stamps), UTC), row))
    return out


class InMemoryFeatureClient:
    """A fake for unit tests of services: keeps the newest record per (view, key)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], FeatureRecord[Any]] = {}

    def get_online(self, view: ViewSpec[Any, R], entity_keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        return [self._rows.get((view.name, k)) for k in entity_keys]

    def push(self, view: ViewSpec[Any, R], records: Sequence[FeatureRecord[R]]) -> None:
        for rec in records:
            old = self._rows.get((view.name, rec.entity_key))
            if old is None or old.event_timestamp <= rec.event_timestamp:
                self._rows[(view.name, rec.entity_key)] = rec
