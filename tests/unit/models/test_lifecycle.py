"""The training skeleton's pure parts: the time-ordered split and scoring beside baselines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mesh.models import score_beside_baselines, time_split

T0 = datetime(2025, 3, 3, tzinfo=UTC)


def test_time_split_puts_the_newest_period_last_and_keeps_order() -> None:
    times = [T0 + timedelta(days=d) for d in (20, 0, 13, 7, 14, 6, 21)]
    split = time_split(times, val=timedelta(weeks=1), test=timedelta(weeks=1))
    assert split.test_start == T0 + timedelta(days=14) and split.val_start == T0 + timedelta(days=7)
    assert [times[i] for i in split.train] == [T0, T0 + timedelta(days=6)]
    assert sorted(times[i] for i in split.val) == [T0 + timedelta(days=7), T0 + timedelta(days=13)]
    assert sorted(int(i) for i in split.test) == [0, 4, 6]  # the newest sample belongs to the test period
    assert np.intersect1d(split.train, split.test).size == 0


def test_time_split_refuses_an_empty_period() -> None:
    times = [T0 + timedelta(days=d) for d in (0, 1, 2)]
    with pytest.raises(ValueError, match=r"train/val/test samples: \[0, 0, 3\]"):
        time_split(times, val=timedelta(weeks=1), test=timedelta(weeks=1))
    with pytest.raises(ValueError, match="no samples"):
        time_split([], val=timedelta(weeks=1), test=timedelta(weeks=1))


def test_models_are_scored_beside_baselines_on_both_periods() -> None:
    held = score_beside_baselines({"model": lambda d: d * 2}, {"baseline": lambda d: d + 100}, 1, 10)
    assert held.val == {"model": 2, "baseline": 101} and held.test == {"model": 20, "baseline": 110}
    with pytest.raises(ValueError, match="baseline"):
        score_beside_baselines({"model": lambda d: d}, {}, 1, 2)
