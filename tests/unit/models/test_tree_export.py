from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from mesh.config import ModelSettings
from mesh.models import (
    INPUT_NAME,
    ExportVerificationError,
    OnnxModel,
    Tolerance,
    compare_with_native,
    export_lightgbm,
    export_sklearn,
)


@pytest.fixture
def ranker(rng: np.random.Generator) -> lgb.Booster:
    x = rng.standard_normal((200, 5))
    relevance = np.clip((x[:, 0] + 0.5 * x[:, 1] + 1.5).round(), 0, 3).astype(int)
    data = lgb.Dataset(x, relevance, group=[10] * 20)
    params = {"objective": "lambdarank", "num_threads": 1, "verbose": -1, "min_data_in_leaf": 5}
    return lgb.train(params, data, num_boost_round=15)


def test_lightgbm_lambdarank_export_matches_native(tmp_path: Path, ranker: lgb.Booster,
                                                   model_settings: ModelSettings) -> None:
    report = export_lightgbm(ranker, 5, tmp_path / "ranker.onnx", check_batches=(1, 40))
    assert [c.input_shapes[INPUT_NAME] for c in report.checks] == [(1, 5), (40, 5)]
    x = np.random.default_rng(3).standard_normal((8, 5)).astype(np.float32)
    scores = OnnxModel.load(report.path, model_settings).run({INPUT_NAME: x})
    np.testing.assert_allclose(next(iter(scores.values())).ravel(), ranker.predict(x), rtol=1e-4, atol=1e-4)


def test_lightgbm_refuses_an_opset_its_converter_breaks_on(tmp_path: Path, ranker: lgb.Booster) -> None:
    with pytest.raises(ValueError, match="<= 15"):
        export_lightgbm(ranker, 5, tmp_path / "r.onnx", target_opset=17)


def test_isolation_forest_export_matches_native(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((300, 4))
    forest = IsolationForest(n_estimators=20, random_state=0).fit(x)
    report = export_sklearn(forest, 4, tmp_path / "forest.onnx", sample=x, check_batches=(1, 64))
    assert len(report.checks) == 2


def test_tree_verification_catches_a_different_model(tmp_path: Path, rng: np.random.Generator) -> None:
    x = rng.standard_normal((300, 4))
    exported = IsolationForest(n_estimators=20, random_state=0).fit(x)
    other = IsolationForest(n_estimators=20, random_state=1).fit(x)
    report = export_sklearn(exported, 4, tmp_path / "forest.onnx", sample=x)
    inputs = [{INPUT_NAME: x[:n].astype(np.float32)} for n in (5, 50)]
    with pytest.raises(ExportVerificationError, match="differs"):
        compare_with_native(report.path, lambda i: [other.predict(i[INPUT_NAME]),
                                                    other.decision_function(i[INPUT_NAME])],
                            inputs, Tolerance(atol=1e-4))
