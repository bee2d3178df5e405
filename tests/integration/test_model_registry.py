"""MLflow registry (in-process: sqlite + file artifacts, no server): promotion on the same validation data, the
feature-schema check on load, hot reload on alias moves, and starting before any champion exists."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mesh.config import ModelSettings
from mesh.errors import NotFound, Unavailable
from mesh.models import (
    CHALLENGER,
    CHAMPION,
    Challenger,
    FeatureSchema,
    FeatureSchemaMismatch,
    MicroBatcher,
    ModelRegistry,
    Objective,
    OnnxModel,
    ReloadingModel,
    check_feature_schema,
    register_and_promote,
    stamp_metadata,
)
from tests.support import await_until
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


SCHEMA = FeatureSchema("scale-v1", ("a", "b", "c"))
OTHER_SCHEMA = FeatureSchema("scale-v0", ("a", "b", "c"))


def register_with_schema(registry: ModelRegistry, tmp_path: Path, name: str, factor: float,
                         schema: FeatureSchema = SCHEMA, logged_err: float = 0.5, alias: str | None = None) -> str:
    path = write_scale_model(tmp_path / f"scale{factor}-{schema.version}.onnx", factor)
    stamp_metadata(path, schema.metadata())
    return registry.log_and_register(name, path, metrics={"val_err": logged_err}, params={"factor": factor},
                                     data_time_range=DATA_RANGE, alias=alias)


async def test_starts_before_any_champion_then_picks_it_up(registry: ModelRegistry, settings: ModelSettings,
                                                           tmp_path: Path, name: str) -> None:
    model = ReloadingModel(registry, name, CHAMPION, settings, schema=SCHEMA, train_hint="python -m x.train")
    await model.start(watch=True)  # an empty registry: no NotFound, the service starts
    try:
        with pytest.raises(Unavailable, match=rf"no champion for {name} yet; train it with `python -m x.train`"):
            model.run({"x": X})
        assert Unavailable.retryable  # the bus retries it, the gRPC interceptor answers UNAVAILABLE

        register_with_schema(registry, tmp_path, name, 2.0, alias=CHAMPION)
        await await_until(lambda: model.version is not None, "the first champion to be picked up")
        assert float(model.run({"x": X})["y"][0, 1]) == 2.0
    finally:
        await model.aclose()


async def test_a_model_on_another_feature_schema_is_refused(registry: ModelRegistry, settings: ModelSettings,
                                                            tmp_path: Path, name: str) -> None:
    stale = register_with_schema(registry, tmp_path, name, 2.0, schema=OTHER_SCHEMA, alias=CHAMPION)
    model = ReloadingModel(registry, name, CHAMPION, settings, schema=SCHEMA)
    await model.start(watch=False)
    with pytest.raises(Unavailable, match=r"refused: .* trained on feature schema 'scale-v0'.*builds 'scale-v1'"):
        model.run({"x": X})
    assert model.version is None and not await model.maybe_reload()  # refused once, not reloaded each time

    good = register_with_schema(registry, tmp_path, name, 3.0, alias=CHAMPION)
    assert await model.maybe_reload() and model.version == good
    registry.set_alias(name, CHAMPION, stale)  # a refused version never replaces a served one
    assert not await model.maybe_reload()
    assert model.version == good and float(model.run({"x": X})["y"][0, 1]) == 3.0


def test_check_feature_schema_names_the_difference() -> None:
    check_feature_schema(SCHEMA.metadata(), SCHEMA, "m")
    with pytest.raises(FeatureSchemaMismatch, match="records no feature schema"):
        check_feature_schema({}, SCHEMA, "m")
    renamed = {**SCHEMA.metadata(), "feature_names": "a,x,c"}
    with pytest.raises(FeatureSchemaMismatch, match="column 1 is 'x' in the model, 'b' here"):
        check_feature_schema(renamed, SCHEMA, "m")


def scale_error(target: float) -> Objective:
    """|factor - target| measured by running the version on fixed rows (the 'validation period')."""
    return Objective("val_err", False, lambda v: abs(float(v.model.run({"x": X})["y"][0, 1]) - target))


def challenger(tmp_path: Path, name: str, factor: float, logged_err: float,
               schema: FeatureSchema = SCHEMA) -> Challenger:
    path = write_scale_model(tmp_path / f"challenger{factor}.onnx", factor)
    stamp_metadata(path, schema.metadata())
    return Challenger(name, path, schema, {"val_err": logged_err}, {"factor": factor}, DATA_RANGE)


def test_promotion_rescores_the_champion_on_the_same_validation_data(
        registry: ModelRegistry, settings: ModelSettings, tmp_path: Path, name: str) -> None:
    first = register_and_promote(registry, challenger(tmp_path, name, 2.0, logged_err=9.0), scale_error(3.0),
                                 settings)
    assert first.promoted and first.champion_version is None and first.challenger_value == 1.0
    # logs a better figure from its own run (0.0), but on the same data it is worse than the champion
    worse = register_and_promote(registry, challenger(tmp_path, name, 5.0, logged_err=0.0), scale_error(3.0),
                                 settings)
    assert not worse.promoted
    assert (worse.challenger_value, worse.champion_value) == (2.0, 1.0)  # re-scored, not the logged 9.0
    assert registry.version_of(name, CHAMPION) == first.challenger_version
    assert registry.version_of(name, CHALLENGER) == worse.challenger_version
    better = register_and_promote(registry, challenger(tmp_path, name, 3.0, logged_err=5.0), scale_error(3.0),
                                  settings)
    assert better.promoted and better.champion_version == first.challenger_version
    assert registry.load(name, CHAMPION).version == better.challenger_version


def test_a_champion_on_another_schema_loses(registry: ModelRegistry, settings: ModelSettings, tmp_path: Path,
                                            name: str) -> None:
    old = register_with_schema(registry, tmp_path, name, 3.0, schema=OTHER_SCHEMA, alias=CHAMPION)
    decision = register_and_promote(registry, challenger(tmp_path, name, 5.0, logged_err=2.0), scale_error(3.0),
                                    settings)
    assert decision.promoted and decision.champion_version == old and decision.champion_value is None
    assert "feature schema" in decision.reason
