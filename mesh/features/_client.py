"""`FeatureClient`: the port services read features through, a Feast adapter and an in-memory fake."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from mesh.features._frame import records_to_frame
from mesh.features._online import ViewReader
from mesh.features._push import ViewWriter, write_many
from mesh.features._repo import FeatureRepo
from mesh.features._schema import FeatureRecord, ViewSpec

R = TypeVar("R")


class FeatureClient(Protocol):
    """Batched online reads and pushes of typed feature rows."""

    def get_online(self, view: ViewSpec[Any, R], entity_keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        """One result per key, in order; None where the entity has no row. Timestamps are the rows' event times."""
        ...

    def push(self, view: ViewSpec[Any, R], records: Sequence[FeatureRecord[R]]) -> None:
        """Write rows to the online store (the caller guarantees they are the newest state)."""
        ...

    def push_many(self, batches: Sequence[tuple[ViewSpec[Any, Any], Sequence[FeatureRecord[Any]]]]) -> None:
        """:meth:`push` of several views at once (the feature ingestor's batch: one call to the store)."""
        ...


class FeastFeatureClient:
    """FeatureClient over a Feast store (Redis or SQLite online store).

    Reads go straight to the provider's `online_read` with the view's Feast objects and decoders resolved
    on first use (see `mesh.features._online`); they equal `get_online_features` + `to_dict`, at a fraction
    of the cost. Pushes write Feast's own rows (on Redis: the HSETs of the store's `online_write_batch`, all
    views of a batch in one pipelined call; see `mesh.features._push`) and store what `FeatureStore.push`
    would. A view's definition is read from the registry once per client:
    re-applying a changed view needs a new client (a restart), as it already needs new service code.
    """

    def __init__(self, repo: FeatureRepo) -> None:
        self._repo = repo
        self._readers: dict[str, ViewReader[Any]] = {}
        self._writers: dict[str, ViewWriter[Any]] = {}

    def _reader(self, view: ViewSpec[Any, R]) -> ViewReader[R]:
        store = self._repo.store()
        reader = self._readers.get(view.name)
        if reader is None or reader.store is not store or (reader.view is not view and reader.view != view):
            reader = self._readers[view.name] = ViewReader(store, view)
        return reader

    def get_online(self, view: ViewSpec[Any, R], entity_keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        if not entity_keys:
            return []
        return self._reader(view).read(entity_keys)

    async def get_online_async(
        self, view: ViewSpec[Any, R], entity_keys: Sequence[str]
    ) -> list[FeatureRecord[R] | None]:
        """Async read (Redis online store only; Feast's SQLite store has no async path)."""
        if not entity_keys:
            return []
        return await self._reader(view).read_async(entity_keys)

    def _writer(self, view: ViewSpec[Any, R]) -> ViewWriter[R]:
        store = self._repo.store()
        writer = self._writers.get(view.name)
        if writer is None or writer.store is not store or (writer.view is not view and writer.view != view):
            writer = self._writers[view.name] = ViewWriter(store, view)
        return writer

    def push(self, view: ViewSpec[Any, R], records: Sequence[FeatureRecord[R]]) -> None:
        if records:
            self._writer(view).write(records)

    def push_many(self, batches: Sequence[tuple[ViewSpec[Any, Any], Sequence[FeatureRecord[Any]]]]) -> None:
        """Every view's rows in one pipelined call on the Redis online store (see `mesh.features._push`)."""
        write_many([(self._writer(view), records) for view, records in batches if records])

    def push_with_feast(self, view: ViewSpec[Any, R], records: Sequence[FeatureRecord[R]]) -> None:
        """The same write through Feast's public `FeatureStore.push` (the reference the fast path equals)."""
        if not records:
            return
        from feast.data_source import PushMode

        self._repo.store().push(view.push_source, records_to_frame(view, records), to=PushMode.ONLINE)


class InMemoryFeatureClient:
    """A fake for unit tests of services: keeps the newest record per (view, key)."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], FeatureRecord[Any]] = {}

    def get_online(self, view: ViewSpec[Any, R], entity_keys: Sequence[str]) -> list[FeatureRecord[R] | None]:
        return [self._rows.get((view.name, k)) for k in entity_keys]

    def push_many(self, batches: Sequence[tuple[ViewSpec[Any, Any], Sequence[FeatureRecord[Any]]]]) -> None:
        for view, records in batches:
            self.push(view, records)

    def push(self, view: ViewSpec[Any, R], records: Sequence[FeatureRecord[R]]) -> None:
        for rec in records:
            old = self._rows.get((view.name, rec.entity_key))
            if old is None or old.event_timestamp <= rec.event_timestamp:
                self._rows[(view.name, rec.entity_key)] = rec
