"""Shared by the automation unit tests: an approval store on the local Redis, in a namespace of its own."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from mesh.config import MeshSettings
from services.automation.approval import ApprovalStore


@pytest.fixture
def store() -> Iterator[ApprovalStore]:
    client = redis.Redis.from_url(MeshSettings().redis.url)
    ns = f"test_automation_{uuid.uuid4().hex[:10]}"
    yield ApprovalStore(client, ns)
    for key in client.scan_iter(f"{ns}:*"):
        client.delete(key)
    client.close()
