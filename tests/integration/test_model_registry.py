"""MLflow registry (in-process: sqlite + file artifacts, no server) and hot reload on alias moves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mesh.config import ModelSettings
from mesh.errors import NotFound
from mesh.models import CHALLENGER, CHAMPION, MicroBatcher, ModelRegistry, OnnxModel, ReloadingModel
from tests.unit.models.tiny_models import write_scale_model

DATA_RANGE = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
X = np.arange(6, dtype=np.float32).reshape(2, 3)


@pytest.fixture
def settings(tmp_path: Path) -> ModelSettings:
    return ModelSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_dir=tmp_path / "artifacts",
                         max_batch=32, max_wait_ms=1.0, reload_interval_s=0.02)


@pytest.fixture
def registry(settings: ModelSettings) -> ModelRegistry:
    return ModelRegistry(settings, experiment="tests")


def register(registry: ModelRegistry, tmp_path: Path, factor: float, ndcg: float, name: str = "ranker") -> str:
    path = write_scale_model(tmp_path / f"scale{factor}.onnx", factor)
    return registry.log_and_register(name, path, metrics={"val_ndcg": ndcg}, params={"factor": factor},
                                     data_time_range=DATA_RANGE)


def scale_of(path: Path, settings: ModelSettings) -> float:
    return float(OnnxModel.load(path, settings).run({"x": np.ones((1, 3), np.float32)})["y"][0, 0])


def test_register_promote_and_load_by_alias(registry: ModelRegistry, settings: ModelSettings,
                                            tmp_path: Path) -> None:
    v1 = register(registry, tmp_path, 2.0, ndcg=0.50)
    first = registry.promote_if_better("ranker", "val_ndcg", higher_is_better=True)
    assert first.promoted and first.champion_version is None and first.challenger_value == pytest.approx(0.5)

    v2 = register(registry, tmp_path, 3.0, ndcg=0.40)  # worse: champion stays
    worse = registry.promote_if_better("ranker", "val_ndcg", higher_is_better=True)
    assert not worse.promoted
    assert (worse.challenger_version, worse.champion_version) == (v2, v1)
    assert (worse.challenger_value, worse.champion_value) == (pytest.approx(0.40), pytest.approx(0.50))
    assert registry.load("ranker", CHAMPION).version == v1

    # with "lower is better" the same numbers promote v2
    lower = registry.promote_if_better("ranker", "val_ndcg", higher_is_better=False)
    assert lower.promoted
    version, path = registry.load("ranker", CHAMPION)
    assert version == v2 and scale_of(path, settings) == 3.0
    assert registry.load("ranker", CHALLENGER).version == v2

    registry.set_alias("ranker", CHAMPION, v1)
    version, path = registry.load("ranker", CHAMPION)
    assert version == v1 and scale_of(path, settings) == 2.0


def test_missing_alias_is_not_found(registry: ModelRegistry, tmp_path: Path) -> None:
    register(registry, tmp_path, 2.0, ndcg=0.5)
    with pytest.raises(NotFound):
        registry.load("ranker", CHAMPION)
    with pytest.raises(NotFound):
        registry.promote_if_better("no-such-model", "val_ndcg", higher_is_better=True)


async def test_alias_move_hot_reloads_without_failing_a_call(registry: ModelRegistry, settings: ModelSettings,
                                                             tmp_path: Path) -> None:
    v1 = register(registry, tmp_path, 2.0, ndcg=0.5)
    v2 = register(registry, tmp_path, 3.0, ndcg=0.6)
    registry.set_alias("ranker", CHAMPION, v1)
    model = ReloadingModel(registry, "ranker", CHAMPION, settings)
    await model.start(watch=False)
    assert model.version == v1

    async def call() -> float:
        async with MicroBatcher(model.run, settings.max_batch, settings.max_wait_ms) as batcher:
            return float((await batcher.submit({"x": X}))["y"][1, 2] / X[1, 2])

    async def move_alias_then_reload() -> bool:
        await asyncio.to_thread(registry.set_alias, "ranker", CHAMPION, v2)
        return await model.maybe_reload()

    # 200 calls around the move: before, interleaved with the load + warm-up + swap, and after
    outcomes = await asyncio.gather(*(call() for _ in range(100)), move_alias_then_reload(),
                                    *(call() for _ in range(100)), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert failures == []
    assert outcomes[100] is True
    assert set(outcomes[:100]) | set(outcomes[101:]) <= {2.0, 3.0}
    assert model.version == v2
    assert [await call() for _ in range(5)] == [3.0] * 5  # later calls run on the new version


async def test_background_watch_follows_the_alias(registry: ModelRegistry, settings: ModelSettings,
                                                  tmp_path: Path) -> None:
    v1 = register(registry, tmp_path, 2.0, ndcg=0.5)
    v2 = register(registry, tmp_path, 3.0, ndcg=0.6)
    registry.set_alias("ranker", CHAMPION, v1)
    model = ReloadingModel(registry, "ranker", CHAMPION, settings)
    await model.start(watch=True)
    results: list[float] = []
    try:
        registry.set_alias("ranker", CHAMPION, v2)
        for _ in range(500):  # bounded poll, ~10 s at most; calls keep running meanwhile
            results.append(float(model.run({"x": X})["y"][0, 1]))
            if model.version == v2:
                break
            await asyncio.sleep(0.02)
        assert model.version == v2
        assert float(model.run({"x": X})["y"][0, 1]) == 3.0
        assert set(results) <= {2.0, 3.0}
    finally:
        await model.aclose()


async def test_start_without_the_alias_is_not_found(registry: ModelRegistry, settings: ModelSettings) -> None:
    with pytest.raises(NotFound):
        await ReloadingModel(registry, "ranker", CHAMPION, settings).start()
