"""Tenant isolation, adversarially: every read and delete of the vector index is scoped by the ONE filter
builder; whatever a tenant id, filter name or filter value contains, tenant A never sees (or deletes) a
vector of tenant B. On a real Milvus Lite file."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from mesh.errors import InvalidArgument
from services.nlp.vectors import Item, VectorIndex, scoped_filter
from tests.unit.nlp.helpers import milvus_uri

DIM = 8
ATTACKS = [
    'tenant-b', 'tenant-a" or tenant_id != "', "tenant-a' or '1'=='1", 'tenant-a" || tenant_id == "tenant-b',
    "tenant-a or true", "tenant-a||1", 'x") or (tenant_id like "%', "tenant-a\" or kind == \"task", "",
    "tenant-a\\", "tenant-a\n", 'tenant_id in ["tenant-b"]', "tenant-a and not false", "*", "%", "tenant-a)",
    "tenant-a\u0000", "ténant-a", " tenant-a", "tenant-a; drop collection nlp_items", "a" * 200,
]


@pytest.fixture(scope="module")
def index() -> Iterator[VectorIndex]:
    """One Milvus Lite file for the module (opening one costs about a second); the erasure test runs last."""
    idx = VectorIndex(milvus_uri(), dim=DIM, collection=f"iso_{uuid.uuid4().hex[:10]}")
    rng = np.random.default_rng(0)
    for tenant in ("tenant-a", "tenant-b"):
        items = [Item(tenant, "task", f"task-{i}", "proj-1", f"{tenant} title {i}", "text") for i in range(20)]
        idx.upsert(items, rng.normal(size=(20, DIM)).astype(np.float32))
    yield idx
    idx.drop()


def _tenants(hits: list[Item]) -> set[str]:
    return {h.tenant_id for h in hits}


def test_the_filter_always_starts_with_the_tenant_and_takes_only_ids() -> None:
    assert scoped_filter("tenant-a") == 'tenant_id == "tenant-a"'
    assert scoped_filter("tenant-a", {"project_id": "p-1", "kind": "task"}, item_ids=["t1", "t2"]) == (
        'tenant_id == "tenant-a" and kind == "task" and project_id == "p-1" and item_id in ["t1", "t2"]')
    for attack in ATTACKS[1:]:
        with pytest.raises(InvalidArgument):
            scoped_filter(attack)
        with pytest.raises(InvalidArgument):
            scoped_filter("tenant-a", {"project_id": attack})
        with pytest.raises(InvalidArgument):
            scoped_filter("tenant-a", item_ids=[attack])
    with pytest.raises(InvalidArgument, match="cannot filter"):
        scoped_filter("tenant-a", {'tenant_id == "tenant-b" or project_id': "p"})
    with pytest.raises(InvalidArgument, match="kind"):
        scoped_filter("tenant-a", {"kind": "user"})


def test_tenant_a_never_reads_or_deletes_tenant_b(index: VectorIndex) -> None:
    for attack in ATTACKS:
        _attack(index, attack)
    assert index.count("tenant-a") == 20


def _attack(index: VectorIndex, attack: str) -> None:
    query = np.ones((1, DIM), dtype=np.float32)
    results: list[Item] = []
    attempts: list[Callable[[], object]] = [
        lambda: results.extend(h.item for h in index.search("tenant-a", query, 100, {"project_id": attack})[0]),
        lambda: results.extend(h.item for h in index.search("tenant-a", query, 100, {attack: "proj-1"})[0]),
        lambda: results.extend(i for i, _ in index.get("tenant-a", "task", [attack, "task-1"]).values()),
        lambda: index.delete("tenant-a", "task", [attack]),
    ]
    if attack != "tenant-b":  # a well-formed id of another tenant is a legitimate tenant id: its own data only
        attempts += [lambda: results.extend(h.item for h in index.search(attack, query, 100)[0]),
                     lambda: index.erase_tenant(attack)]
    for attempt in attempts:
        with contextlib.suppress(InvalidArgument):  # refused is fine; leaking is not
            attempt()
    assert _tenants(results) <= {"tenant-a"}, attack
    assert index.count("tenant-b") == 20, attack


def test_a_tenant_reads_its_own_items_and_erasure_removes_only_them(index: VectorIndex) -> None:
    query = np.ones((1, DIM), dtype=np.float32)
    assert _tenants([h.item for h in index.search("tenant-b", query, 100)[0]]) == {"tenant-b"}
    assert len(index.search("tenant-b", query, 100)[0]) == 20
    index.erase_tenant("tenant-a")
    assert index.count("tenant-a") == 0 and index.search("tenant-a", query, 10)[0] == []
    assert index.count("tenant-b") == 20
