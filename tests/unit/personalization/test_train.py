"""The policy model's lifecycle: time split, ALS beside popularity on the validation and test periods, the
``.npz`` registered as challenger and promoted only when it beats the champion re-scored on the same
validation period; the service follows the champion alias, and serving imports no training library."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mesh.config import ModelSettings
from mesh.events import Envelope
from mesh.features import InMemoryAggregates
from mesh.models import CHALLENGER, CHAMPION, ModelRegistry
from services.personalization.factors import MODEL_NAME, POLICY_FILE, PolicyModel
from services.personalization.online import follow_registry, load_registered
from services.personalization.recommend import Recommender
from services.personalization.state import PERSONALIZATION_REDUCERS
from services.personalization.train import (
    METRIC,
    Trained,
    quality,
    register_and_promote,
    segment_report,
    train,
)
from simulator import SimConfig, simulate

WORLD = SimConfig(tenants=1, users_per_tenant=16, weeks=2, seed=5)


@pytest.fixture(scope="module")
def events() -> list[Envelope]:
    return list(simulate(WORLD))


@pytest.fixture(scope="module")
def trained(events: list[Envelope]) -> Trained:
    return train(events, "v-test", seed=0)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModelRegistry, ModelSettings]:
    root = tmp_path_factory.mktemp("mlflow")
    settings = ModelSettings(tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_dir=root / "artifacts",
                             reload_interval_s=0.05)  # type: ignore[call-arg]
    return ModelRegistry(settings), settings


def test_the_segment_report_accounts_for_every_person_once(trained: Trained) -> None:
    from mesh.events import TASK_TYPE_SLOTS
    from services.personalization.factors import behaviour

    rows = segment_report(trained)
    people = {w: p for w, p in trained.val_period.people.items() if sum(p.type_views.values())}
    assert [r["segment"] for r in rows] == list(range(len(trained.model.segments.centroids)))
    assert sum(int(r["people"]) for r in rows) == len(people)  # type: ignore[call-overload]
    for row in rows:  # each segment's count is the people its centroid is nearest to
        mine = [w for w, p in people.items() if trained.model.segments.of(behaviour(p)) == row["segment"]]
        assert row["people"] == len(mine)
        assert 0.0 <= float(row["click_rate"]) <= 1.0  # type: ignore[arg-type]
        assert 0.0 <= float(row["val_ndcg_at_10_policy"]) <= 1.0  # type: ignore[arg-type]
        assert all(str(x).split()[0] in TASK_TYPE_SLOTS for x in row["looks_at"])  # type: ignore[attr-defined]


def test_als_beats_popularity_on_the_held_out_periods(trained: Trained) -> None:
    for period in (trained.val, trained.test):
        assert period["policy"].people > 5
        assert period["policy"].ndcg_at_10 > period["popularity"].ndcg_at_10
        assert period["policy"].recall_at_10 >= period["popularity"].recall_at_10
    assert trained.model.als is not None and len(trained.model.segments.centroids) >= 1
    assert trained.data_time_range[0] < trained.data_time_range[1]


def test_the_score_is_the_models_own_a_model_without_als_scores_as_popularity(trained: Trained) -> None:
    no_als = PolicyModel("x", None, trained.model.segments)
    assert quality(no_als, trained.val_period, trained.popularity) == quality(None, trained.val_period,
                                                                               trained.popularity)


def test_registered_as_challenger_promoted_only_when_better_and_served_by_alias(
        trained: Trained, registry: tuple[ModelRegistry, ModelSettings], tmp_path: Path) -> None:
    reg, _ = registry
    first = register_and_promote(trained, reg, tmp_path / "a")
    assert first.promoted and reg.version_of(MODEL_NAME, CHAMPION) == first.challenger_version
    assert first.challenger_value == pytest.approx(trained.val["policy"].ndcg_at_10)
    assert reg.metric(MODEL_NAME, first.challenger_version, METRIC) == pytest.approx(first.challenger_value)

    # a worse challenger (no factors: popularity) is registered but the champion stays
    worse = Trained(PolicyModel("v-worse", None, trained.model.segments), trained.val, trained.test,
                    trained.val_period, trained.popularity, trained.data_time_range, trained.train_events)
    second = register_and_promote(worse, reg, tmp_path / "b")
    assert not second.promoted and second.champion_value == pytest.approx(first.challenger_value)
    assert reg.version_of(MODEL_NAME, CHALLENGER) == second.challenger_version
    assert reg.version_of(MODEL_NAME, CHAMPION) == first.challenger_version

    version, served = load_registered(reg, MODEL_NAME, CHAMPION)
    assert version == first.challenger_version and served.version == "v-test"
    assert served.als is not None and trained.model.als is not None
    assert np.allclose(served.als.items, trained.model.als.items)


def test_the_service_follows_the_champion_alias(trained: Trained, registry: tuple[ModelRegistry, ModelSettings],
                                                tmp_path: Path) -> None:
    reg, settings = registry
    (tmp_path / "x").mkdir()
    path = trained.model.save(tmp_path / "x" / POLICY_FILE)
    span = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))
    name = "personalization-policy-follow"
    v1 = reg.log_and_register_file(name, path, {METRIC: 0.1}, {}, span, alias=CHAMPION)
    loaded, model = load_registered(reg, name, CHAMPION)
    rec = Recommender(InMemoryAggregates(PERSONALIZATION_REDUCERS), model)
    assert loaded == v1 and rec.version == "hybrid-v-test"
    PolicyModel("v-next", None, trained.model.segments).save(tmp_path / "x" / POLICY_FILE)
    v2 = reg.log_and_register_file(name, tmp_path / "x" / POLICY_FILE, {METRIC: 0.2}, {}, span, alias=None)

    async def follow() -> str:
        task = asyncio.create_task(follow_registry(reg, name, CHAMPION, rec, settings.reload_interval_s, loaded))
        try:
            await asyncio.sleep(0.2)
            assert rec.version == "hybrid-v-test"  # the alias has not moved
            reg.set_alias(name, CHAMPION, v2)
            for _ in range(200):
                if rec.version != "hybrid-v-test":
                    break
                await asyncio.sleep(0.05)
            return rec.version
        finally:
            task.cancel()

    assert asyncio.run(follow()) == "hybrid-v-next"


SERVE = """
import json, sys
import services.personalization.__main__  # the serving entry point
from mesh.config import ModelSettings
from mesh.models import CHAMPION, ModelRegistry
from services.personalization.factors import MODEL_NAME
from services.personalization.online import load_registered
version, model = load_registered(ModelRegistry(ModelSettings.model_validate_json(sys.argv[1])), MODEL_NAME, CHAMPION)
print(json.dumps({"version": version, "als": model.als is not None,
                  "loaded": sorted(m for m in ("implicit", "sklearn", "torch", "lightgbm", "simulator")
                                   if m in sys.modules)}))
"""


def test_serving_fetches_the_factors_by_alias_without_a_training_library(
        trained: Trained, registry: tuple[ModelRegistry, ModelSettings], tmp_path: Path) -> None:
    reg, settings = registry
    if reg.version_of(MODEL_NAME, CHAMPION) is None:
        register_and_promote(trained, reg, tmp_path)
    out = subprocess.run([sys.executable, "-c", SERVE, settings.model_dump_json()], capture_output=True, text=True,
                         timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"version": reg.version_of(MODEL_NAME, CHAMPION), "als": True, "loaded": []}
