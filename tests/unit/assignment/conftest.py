from __future__ import annotations

import pytest

from tests.unit.assignment.helpers import World, small_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return small_world(tmp_path_factory.mktemp("assignment-models"))
