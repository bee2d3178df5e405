from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mesh.features import FeatureIngestor, FeatureRepo, FeatureRepoConfig, build_ingestor

MakeIngestor = Callable[[], FeatureIngestor]


@pytest.fixture
def make_ingestor(tmp_path: Path) -> Iterator[MakeIngestor]:
    """Fresh SQLite-backed stores, each with its own project name."""

    def make() -> FeatureIngestor:
        repo = FeatureRepo(FeatureRepoConfig(f"t_{uuid.uuid4().hex[:10]}", tmp_path / "repo", tmp_path / "offline",
                                             "sqlite"))
        repo.apply()
        return build_ingestor(repo)

    yield make
