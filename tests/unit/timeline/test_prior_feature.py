"""The effort prior as a task-model feature: a constant without data (with a message), the pooled model
from a folder of story-point CSVs (cached), and the feature slot it fills."""

from __future__ import annotations

import csv
import logging
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from services.timeline.effort_prior import CONSTANT_POINTS, ConstantPrior, load_effort_prior, read_pooled
from services.timeline.features import STATIC_NAMES, static_vector
from services.timeline.state import TaskState

SMALL = "fix typo in label"
BIG = "redesign the whole storage engine migration across every service"


def write_csv(path: Path) -> None:
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["issuekey", "title", "description", "storypoint", "split_mark"])
        for i in range(120):
            big = i % 2 == 0
            split = ("train", "train", "val")[i % 3]
            w.writerow([f"X-{i}", BIG if big else SMALL, f"item {rng.integers(1000)}", 13 if big else 1, split])


def test_no_data_gives_a_constant_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        prior = load_effort_prior(tmp_path / "missing", tmp_path / "cache")
    assert isinstance(prior, ConstantPrior) and prior.name == "constant"
    assert "effort prior skipped" in caplog.text
    assert prior.points(["a", "b"]).tolist() == [CONSTANT_POINTS, CONSTANT_POINTS]


def test_pooled_model_learns_from_the_text_and_is_cached(tmp_path: Path) -> None:
    data = tmp_path / "sp"
    data.mkdir()
    write_csv(data / "one.csv")
    (data / "other.csv").write_text("a,b\n1,2\n")  # not a story-point file: skipped
    assert set(read_pooled(data)) == {"train", "val"}
    prior = load_effort_prior(data, tmp_path / "cache")
    small, big = prior.points([SMALL, BIG])
    assert big > small
    assert list((tmp_path / "cache").glob("effort_prior-*.pkl"))
    again = load_effort_prior(data, tmp_path / "cache")
    assert again.name == prior.name
    np.testing.assert_allclose(again.points([SMALL, BIG]), [small, big])


def test_the_feature_is_log1p_of_the_points() -> None:
    created = datetime(2026, 1, 5, tzinfo=UTC)
    task = TaskState(tenant_id="x", entity_id="t", project_id="p", created=True, created_at=created,
                     history=[(created, "e1", "todo")])
    now = datetime(2026, 1, 6, tzinfo=UTC)
    i = STATIC_NAMES.index("effort_points")
    assert static_vector(task, None, None, 0, now, 8.0)[i] == pytest.approx(np.log1p(8.0))
    assert static_vector(task, None, None, 0, now)[i] == pytest.approx(np.log1p(CONSTANT_POINTS))
