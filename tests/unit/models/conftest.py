from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

for _key, _value in {"MLFLOW_DISABLE_TELEMETRY": "true", "ORT_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_key, _value)

from mesh.config import ModelSettings  # noqa: E402
from mesh.models import clear_session_cache  # noqa: E402


@pytest.fixture
def model_settings(tmp_path: Path) -> ModelSettings:
    return ModelSettings(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_dir=tmp_path / "artifacts",
        max_batch=64,
        max_wait_ms=20.0,
        reload_interval_s=0.05,
    )


@pytest.fixture(autouse=True)
def _fresh_session_cache() -> Iterator[None]:
    clear_session_cache()
    yield
    clear_session_cache()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)
