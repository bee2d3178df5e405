"""The vector database: Milvus (embedded Milvus Lite file by default, a server or cluster by URI).

One collection for every tenant, ``tenant_id`` its partition key. Tenant isolation lives in ONE function,
:func:`scoped_filter`: every search, query and delete of :class:`VectorIndex` gets its filter expression
from it, and it always starts with the tenant's own equality. It builds expressions only from validated
ids (:func:`checked_id`: letters, digits and ``._:@-``; no quote, space, bracket or operator can get in)
and a fixed set of filter fields, never from user text. (Milvus Lite has no expression templates, so
literals are inlined; the validation is what makes that safe.) As a second line, rows a search or query
returns are dropped unless their ``tenant_id`` is the caller's.

Writes are idempotent (upsert by primary key ``tenant/kind/item``, delete by filter), so a redelivered
event changes nothing, and the index can be rebuilt by replaying the topics into an empty collection.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mesh.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

COLLECTION = "nlp_items"
KINDS = ("task", "comment")
FILTER_FIELDS = ("project_id", "kind")
"""Fields a caller may filter on (exact match on an id-like value)."""
MAX_TEXT = 8000
"""Characters of text kept per item (what BM25 indexes and SimilarTasks re-embeds)."""
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
CREATED_FIELD = "created_days"
_OUTPUT = ["tenant_id", "kind", "item_id", "project_id", "title", "text"]


def checked_id(value: str, what: str) -> str:
    """``value`` if it is a well-formed id, else InvalidArgument (never an expression fragment)."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise InvalidArgument(f"{what} {value!r} is not a valid id (1-128 of letters, digits and ._:@-)")
    return value


def scoped_filter(tenant_id: str, filters: Mapping[str, str] | None = None, *,
                  item_ids: Sequence[str] = ()) -> str:
    """THE filter expression of every read and delete: the tenant's equality first, then exact matches on
    :data:`FILTER_FIELDS` and an optional id list, all from validated ids."""
    parts = [f'tenant_id == "{checked_id(tenant_id, "tenant_id")}"']
    for name, value in sorted((filters or {}).items()):
        if name not in FILTER_FIELDS:
            raise InvalidArgument(f"cannot filter on {name!r}; filters: {', '.join(FILTER_FIELDS)}")
        if name == "kind" and value not in KINDS:
            raise InvalidArgument(f"kind {value!r} is not one of {', '.join(KINDS)}")
        parts.append(f'{name} == "{checked_id(value, name)}"')
    if item_ids:
        quoted = ", ".join(f'"{checked_id(i, "item_id")}"' for i in item_ids)
        parts.append(f"item_id in [{quoted}]")
    return " and ".join(parts)


@dataclass(frozen=True)
class Item:
    """One indexed text: a task (title + description) or a comment."""

    tenant_id: str
    kind: str
    item_id: str
    project_id: str
    title: str
    text: str
    """the body (description, comment text); searched together with the title"""
    created_days: float = 0.0
    """when the item was created, in days since the Unix epoch (the time prior of the fusion); 0 = unknown"""

    @property
    def full_text(self) -> str:
        return f"{self.title}\n{self.text}".strip()


@dataclass(frozen=True)
class Hit:
    item: Item
    score: float
    """cosine similarity of the query and the item"""


def primary_key(tenant_id: str, kind: str, item_id: str) -> str:
    # '/' cannot occur in a checked id, so the key is unambiguous
    return f"{checked_id(tenant_id, 'tenant_id')}/{kind}/{checked_id(item_id, 'item_id')}"


class VectorIndex:
    """The tenant-scoped item store over a ``MilvusClient`` (thread-safe: calls are serialised)."""

    def __init__(self, uri: str, *, dim: int, collection: str = COLLECTION) -> None:
        """``uri``: a file path (Milvus Lite) or ``http://host:19530`` (server / cluster)."""
        from pymilvus import MilvusClient  # type: ignore[import-untyped]

        self._client = MilvusClient(uri)
        self._collection = collection
        self._dim = dim
        self._lock = threading.Lock()
        self._ensure_collection()
        fields = {f["name"] for f in self._client.describe_collection(self._collection)["fields"]}
        self._has_time = CREATED_FIELD in fields
        if not self._has_time:  # a collection made before the field: still served, without the time prior
            log.warning("vector collection %s has no %s field: no time prior in its rankings (rebuild it by "
                        "replaying the topics into a new collection to get one)", collection, CREATED_FIELD)
        self._output = [*_OUTPUT, CREATED_FIELD] if self._has_time else list(_OUTPUT)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One call at a time; the vector database's own errors (not loaded after a restart, connection
        lost, server busy) become :class:`Unavailable`, so the consumer retries the batch (backpressure)
        instead of dead-lettering valid events. A collection found released is loaded again first."""
        from pymilvus import MilvusException  # type: ignore[import-untyped]

        with self._lock:
            try:
                yield
            except MilvusException as exc:
                if "release" in str(exc) or "not loaded" in str(exc):
                    self._reload()
                raise Unavailable(f"vector database: {exc}") from exc

    def _reload(self) -> None:
        try:
            self._client.load_collection(self._collection)
        except Exception:  # still unavailable: the retry of the whole call tries again
            log.warning("vector collection %s could not be loaded yet", self._collection, exc_info=True)

    def _ensure_collection(self) -> None:
        from pymilvus import DataType, MilvusClient  # type: ignore[import-untyped]

        if self._client.has_collection(self._collection):
            self._client.load_collection(self._collection)  # a restarted process may find it released
            return
        schema = MilvusClient.create_schema(auto_id=False)
        schema.add_field("pk", DataType.VARCHAR, is_primary=True, max_length=300)
        schema.add_field("tenant_id", DataType.VARCHAR, max_length=128, is_partition_key=True)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("item_id", DataType.VARCHAR, max_length=128)
        schema.add_field("project_id", DataType.VARCHAR, max_length=128)
        schema.add_field("title", DataType.VARCHAR, max_length=2048)
        schema.add_field("text", DataType.VARCHAR, max_length=4 * MAX_TEXT)
        schema.add_field(CREATED_FIELD, DataType.DOUBLE)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self._dim)
        index = self._client.prepare_index_params()
        index.add_index("vector", metric_type="COSINE", index_type="FLAT")
        self._client.create_collection(self._collection, schema=schema, index_params=index,
                                       consistency_level="Strong")
        log.info("created vector collection %s (dim %d)", self._collection, self._dim)

    def upsert(self, items: Sequence[Item], vectors: npt.NDArray[np.float32]) -> None:
        """Insert or replace ``items`` (row i of ``vectors`` is item i)."""
        if not items:
            return
        rows = [{"pk": primary_key(i.tenant_id, i.kind, i.item_id), "tenant_id": i.tenant_id, "kind": i.kind,
                 "item_id": i.item_id, "project_id": i.project_id, "title": i.title[:500],
                 "text": i.text[:MAX_TEXT], "vector": v.tolist(),
                 **({CREATED_FIELD: float(i.created_days)} if self._has_time else {})}
                for i, v in zip(items, vectors, strict=True)]
        with self._locked():
            self._client.upsert(self._collection, rows)
            self._flush()

    def search(self, tenant_id: str, vectors: npt.NDArray[np.float32], k: int,
               filters: Mapping[str, str] | None = None) -> list[list[Hit]]:
        """The ``k`` nearest items of the tenant to each query vector (cosine), within ``filters``."""
        expr = scoped_filter(tenant_id, filters)
        with self._locked():
            found = self._client.search(self._collection, [v.tolist() for v in vectors], limit=k, filter=expr,
                                        output_fields=self._output)
        return [[Hit(_item(h["entity"]), float(h["distance"])) for h in hits
                 if h["entity"]["tenant_id"] == tenant_id] for hits in found]

    def get(self, tenant_id: str, kind: str, item_ids: Sequence[str], *, with_vectors: bool = False
            ) -> dict[str, tuple[Item, npt.NDArray[np.float32] | None]]:
        """The tenant's items of ``kind`` with these ids (missing ones absent), optionally with vectors."""
        if not item_ids:
            return {}
        expr = scoped_filter(tenant_id, {"kind": kind}, item_ids=item_ids)
        fields = [*self._output, "vector"] if with_vectors else self._output
        with self._locked():
            rows = self._client.query(self._collection, filter=expr, output_fields=fields)
        out: dict[str, tuple[Item, npt.NDArray[np.float32] | None]] = {}
        for row in rows:
            if row["tenant_id"] == tenant_id:
                vector = np.asarray(row["vector"], dtype=np.float32) if with_vectors else None
                out[row["item_id"]] = (_item(row), vector)
        return out

    def items(self, tenant_id: str, kind: str, batch: int = 2000) -> Iterator[Item]:
        """Every item of ``kind`` of the tenant (what the tenant's BM25 index is built from)."""
        expr = scoped_filter(tenant_id, {"kind": kind})
        with self._locked():
            iterator = self._client.query_iterator(self._collection, batch_size=batch, filter=expr,
                                                   output_fields=self._output)
            rows: list[dict[str, Any]] = []
            try:
                while page := iterator.next():
                    rows.extend(page)
            finally:
                iterator.close()
        return (_item(r) for r in rows if r["tenant_id"] == tenant_id)

    def delete(self, tenant_id: str, kind: str, item_ids: Sequence[str]) -> None:
        """Delete these items of the tenant (absent ones are fine: deletes are idempotent)."""
        if item_ids:
            with self._locked():
                self._client.delete(self._collection, filter=scoped_filter(tenant_id, {"kind": kind},
                                                                           item_ids=item_ids))
                self._flush()

    def erase_tenant(self, tenant_id: str) -> None:
        """Delete every item of the tenant (tenant erasure)."""
        with self._locked():
            self._client.delete(self._collection, filter=scoped_filter(tenant_id))
            self._flush()

    def _flush(self) -> None:
        # Milvus Lite searches unflushed (growing) rows ~30x slower (1.5 s vs 50 ms at 10k rows here): each
        # write call is one handler batch, so sealing after it costs little and keeps reads fast
        self._client.flush(self._collection)

    def count(self, tenant_id: str) -> int:
        with self._locked():
            rows = self._client.query(self._collection, filter=scoped_filter(tenant_id),
                                      output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def drop(self) -> None:
        """Drop the collection (before rebuilding it by replaying the topics from the start)."""
        with self._locked():
            self._client.drop_collection(self._collection)

    def close(self) -> None:
        self._client.close()


def _item(row: Mapping[str, Any]) -> Item:
    return Item(row["tenant_id"], row["kind"], row["item_id"], row["project_id"], row["title"], row["text"],
                float(row.get(CREATED_FIELD) or 0.0))
