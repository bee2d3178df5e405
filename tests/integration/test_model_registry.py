"""MLflow registry (in-process: sqlite + file artifacts, no server) and hot reload on alias moves."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
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


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ModelSettings:
    root = tmp_path_factory.mktemp("mlflow")
    return ModelSettings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_dir=root / "artifacts",
                         max_batch=32, max_wait_ms=1.0, reload_interval_s=0.02)


@pytest.fixture(scope="module")
def registry(settings: ModelSettings) -> ModelRegistry:
    return ModelRegistry(settings, experiment="tests")  # one sqlite schema migration per module


@pytest.fixture
def name() -> Iterator[str]:
    yield f"ranker-{uuid.uuid4().hex[:8]}"  # each test its own registered model


def register(registry: ModelRegistry, tmp_path: Path, name: str, factor: float, ndcg: float) -> str:
    path = write_scale_model(tmp_path / f"scale{factor}.onnx", factor)
    return registry.log_and_register(name, path, metrics={"val_ndcg": ndcg}, params={"factor": factor},
                                     data_time_range=DATA_RANGE)


def scale_of(path: Path, settings: ModelSettings) -> float:
    return float(OnnxModel.load(path, settings).run({"x": np.ones((1, 3), np.float32)})["y"][0, 0])


def test_register_promote_and_load_by_alias(registry: ModelRegistry, settings: ModelSettings,
                                            tmp_path: Path, name: str) -> None:
    v1 = register(registry, tmp_path, name, 2.0, ndcg=0.50)
    first = registry.promote_if_better(name, "val_ndcg", higher_is_better=True)
    assert first.promoted and first.champion_version is None and first.challenger_value == pytest.approx(0.5)

    v2 = register(registry, tmp_path, name, 3.0, ndcg=0.40)  # worse: champion stays
    worse = registry.promote_if_better(name, "val_ndcg", higher_is_better=True)
    assert not worse.promoted
    assert (worse.challenger_version, worse.champion_version) == (v2, v1)
    assert (worse.challenger_value, worse.champion_value) == (pytest.approx(0.40), pytest.approx(0.50))
    assert registry.load(name, CHAMPION).version == v1

    # with "lower is better" the same numbers promote v2
    lower = registry.promote_if_better(name, "val_ndcg", higher_is_better=False)
    assert lower.promoted
    version, path = registry.load(name, CHAMPION)
    assert version == v2 and scale_of(path, settings) == 3.0
    assert registry.load(name, CHALLENGER).version == v2

    registry.set_alias(name, CHAMPION, v1)
    version, path = registry.load(name, CHAMPION)
    assert version == v1 and scale_of(path, settings) == 2.0


def test_missing_alias_is_not_found(registry: ModelRegistry, tmp_path: Path, name: str) -> None:
    register(registry, tmp_path, name, 2.0, ndcg=0.5)
    with pytest.raises(NotFound):
        registry.load(name, CHAMPION)
    with pytest.raises(NotFound):
        registry.promote_if_better(name + "-missing", "val_ndcg", higher_is_better=True)


async def test_alias_move_hot_reloads_without_failing_a_call(registry: ModelRegistry, settings: ModelSettings,
                                                             tmp_path: Path, name: str) -> None:
    v1 = register(registry, tmp_path, name, 2.0, ndcg=0.5)
    v2 = register(registry, tmp_path, name, 3.0, ndcg=0.6)
    registry.set_alias(name, CHAMPION, v1)
    model = ReloadingModel(registry, name, CHAMPION, settings)
    await model.start(watch=False)
    assert model.version == v1

    reloaded = asyncio.Event()
    seen: list[float] = []

    async def caller(batcher: MicroBatcher) -> None:
        # keeps calling until it has made one call after the swap: calls overlap the whole reload
        while True:
            after_swap = reloaded.is_set()
            out = await batcher.submit({"x": X})
            seen.append(float(out["y"][1, 2] / X[1, 2]))
            if after_swap:
                assert seen[-1] == 3.0  # a call that starts after the swap runs on the new version
                return

    async def move_alias_then_reload() -> bool:
        await asyncio.sleep(0.01)  # let the callers get going first
        await asyncio.to_thread(registry.set_alias, name, CHAMPION, v2)
        swapped = await model.maybe_reload()
        reloaded.set()
        return swapped

    async with MicroBatcher(model.run, settings.max_batch, settings.max_wait_ms) as batcher:
        outcomes = await asyncio.gather(move_alias_then_reload(), *(caller(batcher) for _ in range(200)),
                                        return_exceptions=True)
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert outcomes[0] is True
    assert model.version == v2
    assert len(seen) >= 400 and set(seen) == {2.0, 3.0}


async def test_background_watch_follows_the_alias(registry: ModelRegistry, settings: ModelSettings,
                                                  tmp_path: Path, name: str) -> None:
    v1 = register(registry, tmp_path, name, 2.0, ndcg=0.5)
    v2 = register(registry, tmp_path, name, 3.0, ndcg=0.6)
    registry.set_alias(name, CHAMPION, v1)
    model = ReloadingModel(registry, name, CHAMPION, settings)
    await model.start(watch=True)
    results: list[float] = []
    try:
        registry.set_alias(name, CHAMPION, v2)
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


async def test_start_without_the_alias_is_not_found(registry: ModelRegistry, settings: ModelSettings,
                                                    name: str) -> None:
    with pytest.raises(NotFound):
        await ReloadingModel(registry, name, CHAMPION, settings).start()
