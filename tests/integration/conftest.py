"""Fixtures shared by the integration tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mesh.config import MeshSettings
from mesh.features import DEFAULT_VIEWS, FeatureRepo, FeatureRepoConfig
from services.assignment.online import OnlineFeatures, open_online
from services.assignment.state import RedisState
from services.assignment.views import ASSIGNMENT_VIEWS


@pytest.fixture
def assignment_feast(settings: MeshSettings, tmp_path: Path) -> Iterator[tuple[RedisState, OnlineFeatures]]:
    """A Feast project (assignment views) and a state namespace of this test's own, in the local Redis;
    removed afterwards."""
    name = f"it_assignment_{uuid.uuid4().hex[:10]}"
    repo = FeatureRepo(FeatureRepoConfig(name, tmp_path / "repo", tmp_path / "offline", "redis", settings.redis.url),
                       views=(*DEFAULT_VIEWS, *ASSIGNMENT_VIEWS))
    state = RedisState(settings.redis.url, namespace=name)
    yield state, open_online(repo)
    repo.store().teardown()
    state.clear()
