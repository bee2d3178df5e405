"""Models: ONNX equals native, the ensemble beats every baseline on the held-out weeks."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from mesh.config import ModelSettings
from mesh.models import INPUT_NAME, OnnxModel
from services.assignment.features import FEATURE_NAMES, FEATURE_SCHEMA
from services.assignment.train import scorers
from tests.unit.assignment.helpers import World


@pytest.mark.parametrize("kind", ["nn", "lambdamart", "ensemble"])
def test_onnx_equals_native_on_held_out_rows(world: World, kind: str) -> None:
    t = world.trained
    path = {"nn": t.exported.nn.path, "lambdamart": t.exported.lambdamart.path,
            "ensemble": t.exported.ensemble.path}[kind]
    native = scorers(t.net, t.booster, t.ensemble)[kind]
    model = OnnxModel.load(path, ModelSettings())
    for rows in (t.split.test.x[:1], t.split.test.x[:50], t.split.test.x):
        got = model.run({INPUT_NAME: rows})[model.output_names[0]].reshape(-1)
        np.testing.assert_allclose(got, native(rows), rtol=1e-4, atol=1e-4)


def test_exported_models_carry_the_feature_layout(world: World) -> None:
    props = {p.key: p.value for p in onnx.load(str(world.trained.exported.ensemble.path)).metadata_props}
    assert props["feature_schema"] == FEATURE_SCHEMA
    assert props["feature_names"].split(",") == list(FEATURE_NAMES)


def test_ensemble_beats_every_baseline_on_held_out_weeks(world: World) -> None:
    quality = world.trained.test
    assert world.trained.split.test.created_at[0] >= world.trained.split.test_start
    for name, q in quality.items():
        if name.startswith("baseline_"):
            assert quality["ensemble"].ndcg_at_5 > q.ndcg_at_5, (name, quality)
            assert quality["ensemble"].mrr > q.mrr, (name, quality)


def test_split_is_time_ordered(world: World) -> None:
    s = world.trained.split
    assert max(s.train.created_at) < s.val_start <= min(s.val.created_at)
    assert max(s.val.created_at) < s.test_start <= min(s.test.created_at)


def test_ensemble_weight_was_chosen_on_validation(world: World) -> None:
    e = world.trained.ensemble
    assert 0.0 <= e.weight <= 1.0
    assert e.val_ndcg_at_5 == pytest.approx(world.trained.val["ensemble"].ndcg_at_5)
