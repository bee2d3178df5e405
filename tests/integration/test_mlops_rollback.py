"""Rollback and versions on a real (sqlite + file) MLflow registry: the champion moves back to the previous
champion (recorded with who, when, why), ``versions`` lists metrics, data range and who promoted, and a
serving ReloadingModel follows the rollback under live calls with no failed call."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from mesh.config import ModelSettings
from mesh.errors import NotFound
from mesh.mlops import build_reference, registry_references
from mesh.models import (
    CHAMPION,
    Challenger,
    FeatureSchema,
    ModelRegistry,
    Objective,
    ReloadingModel,
    register_and_promote,
    stamp_metadata,
)
from mesh.models.__main__ import main as cli
from tests.support import await_until
from tests.unit.models.tiny_models import write_scale_model

DATA_RANGE = (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC))
X = np.ones((1, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> ModelSettings:
    root = tmp_path_factory.mktemp("mlflow")
    return ModelSettings.model_validate({"tracking_uri": f"sqlite:///{root / 'mlflow.db'}",
                                         "artifact_dir": root / "artifacts", "reload_interval_s": 0.02})


@pytest.fixture(scope="module")
def registry(settings: ModelSettings) -> ModelRegistry:
    return ModelRegistry(settings, experiment="tests-rollback")


def promote_three(registry: ModelRegistry, tmp_path: Path, name: str) -> None:
    """v1 (factor 1), v2 (2), v3 (3), each promoted over the previous by a better val_ndcg."""
    for factor in (1.0, 2.0, 3.0):
        path = write_scale_model(tmp_path / f"scale{factor}.onnx", factor)
        registry.log_and_register(name, path, {"val_ndcg": factor / 10}, {"factor": factor}, DATA_RANGE)
        assert registry.promote_if_better(name, "val_ndcg", True).promoted


def test_rollback_goes_back_one_champion_at_a_time(registry: ModelRegistry, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"rb-{uuid.uuid4().hex[:8]}"
    promote_three(registry, tmp_path, name)
    monkeypatch.setenv("MESH_ACTOR", "oncall@acme")
    move = registry.rollback(name, reason="bad live metric")
    assert (move.previous, move.version, move.action, move.actor) == ("3", "2", "rollback", "oncall@acme")
    assert registry.version_of(name, CHAMPION) == "2"
    assert registry.rollback(name).version == "1"  # a second rollback goes one more champion back
    with pytest.raises(NotFound, match="no earlier champion"):
        registry.rollback(name)
    assert registry.rollback(name, to="3").version == "3"  # explicit target
    history = registry.alias_history(name, CHAMPION)
    assert [(m.previous, m.version, m.action) for m in history] == [
        (None, "1", "promote"), ("1", "2", "promote"), ("2", "3", "promote"),
        ("3", "2", "rollback"), ("2", "1", "rollback"), ("1", "3", "rollback")]
    assert history[3].reason == "bad live metric"


def test_versions_cli_lists_metrics_range_and_promoter(registry: ModelRegistry, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"ver-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MESH_ACTOR", "trainer-job")
    promote_three(registry, tmp_path, name)
    monkeypatch.setenv("MESH_ACTOR", "alice")
    assert cli(["rollback", name], registry=registry) == 0
    capsys.readouterr()
    assert cli(["versions", name, "--json"], registry=registry) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows] == ["3", "2", "1"]
    assert rows[1]["aliases"] == ["champion"] and rows[0]["aliases"] == ["challenger"]
    assert rows[0]["metrics"] == {"val_ndcg": pytest.approx(0.3)}
    assert rows[2]["data_start"] == DATA_RANGE[0].isoformat()
    assert rows[0]["promoted"]["actor"] == "trainer-job" and rows[0]["promoted"]["action"] == "promote"
    assert rows[1]["promoted"]["actor"] == "alice" and rows[1]["promoted"]["action"] == "rollback"
    assert cli(["versions", name], registry=registry) == 0
    assert "alice" in capsys.readouterr().out
    assert cli(["rollback", "no-such-model"], registry=registry) == 2
    assert "no champion" in capsys.readouterr().err


async def test_rollback_under_live_calls_switches_version_with_no_failed_call(
        registry: ModelRegistry, settings: ModelSettings, tmp_path: Path) -> None:
    name = f"live-{uuid.uuid4().hex[:8]}"
    promote_three(registry, tmp_path, name)
    model = ReloadingModel(registry, name, CHAMPION, settings)
    await model.start()
    assert model.version == "3"
    seen: list[tuple[str, float]] = []
    stop = asyncio.Event()

    async def caller() -> None:
        while not stop.is_set():
            current = model.current  # what a request does: one read, then run on that version
            y = float(np.asarray(current.model.run({"x": X})["y"]).reshape(-1)[0])
            seen.append((current.version, y))
            await asyncio.sleep(0)

    try:
        calls = asyncio.gather(*(caller() for _ in range(4)))
        await asyncio.to_thread(registry.rollback, name)
        await await_until(lambda: model.version == "2" and any(v == "2" for v, _ in seen[-4:]),
                          "the service to follow the rollback")
        stop.set()
        await calls  # any failed call raises here
    finally:
        stop.set()
        await model.aclose()
    versions = [v for v, _ in seen]
    assert versions[0] == "3" and versions[-1] == "2"
    assert all(y == {"3": 3.0, "2": 2.0}[v] for v, y in seen)  # each call ran wholly on one version


def test_drift_reference_is_stored_with_the_version(registry: ModelRegistry, settings: ModelSettings,
                                                    tmp_path: Path) -> None:
    name = f"ref-{uuid.uuid4().hex[:8]}"
    x = np.column_stack([np.arange(100.0), np.arange(100) % 2, np.zeros(100)])
    reference = build_reference(x, ["a", "b", "c"], x[:, 0] * 2)
    path = write_scale_model(tmp_path / "scale.onnx", 2.0)
    schema = FeatureSchema("scale-v1", ("a", "b", "c"))
    stamp_metadata(path, schema.metadata())
    challenger = Challenger(name, path, schema, {"m": 1.0}, {}, DATA_RANGE,
                            reference=reference.to_json())
    decision = register_and_promote(registry, challenger, Objective("m", True, lambda v: 1.0), settings)
    read = registry_references(registry)
    assert read(name, decision.challenger_version) == reference
    promote_three(registry, tmp_path, name)  # versions registered without a reference have none
    assert read(name, "2") is None
