"""NAB scorer against cases computed by hand (the formulas of NAB's sweeper.py written out)."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np
import pytest

from bench._nab import DEFAULT_PROFILES, NabFile, scaled_sigmoid, score_corpus, scores_by_threshold, sweep_points

T0 = datetime(2024, 1, 1)
STAMPS = [T0 + timedelta(minutes=5 * i) for i in range(20)]
WINDOW = (STAMPS[8], STAMPS[11])  # rows 8..11 inclusive: width 4
MAX_TP = 2 / (1 + math.exp(-5)) - 1  # 0.986614...


def _file(hits: list[int]) -> tuple[NabFile, np.ndarray]:
    scores = np.zeros(20)
    scores[hits] = 1.0
    return NabFile("cat/f.csv", STAMPS, np.zeros(20), [WINDOW]), scores


def test_scaled_sigmoid_fixed_points() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_hand_computed_file_standard_profile() -> None:
    # probation = floor(0.15 * 20) = 3 rows: the hit at row 1 is ignored.
    # row 9 in window 8..11: position -(11 - 9 + 1)/4 = -0.75 -> (2/(1+e^-3.75) - 1)/maxTP = 0.966990
    # row 14 after it: |11 - 14|/(4 - 1) = 1.0 -> -0.986614 * 0.11 = -0.108528
    # row 5 before any window: -1 * 0.11
    tp = (2 / (1 + math.exp(-3.75)) - 1) / MAX_TP
    assert tp == pytest.approx(0.966990, abs=1e-6)
    expected_raw = tp - 0.986614 * 0.11 - 0.11
    f, scores = _file([1, 5, 9, 14])
    res = score_corpus([f], {f.name: scores})
    std = res["standard"]
    assert std.threshold == 1.0  # the sweep keeps the threshold that detects the four hits
    assert std.raw == pytest.approx(expected_raw, abs=1e-5)
    assert std.null == -1.0 and std.perfect == 1.0
    assert std.normalized == pytest.approx(100 * (expected_raw + 1) / 2, abs=1e-3)  # 87.42
    low_fn = res["reward_low_FN_rate"]
    assert low_fn.null == -2.0
    assert low_fn.normalized == pytest.approx(100 * (expected_raw + 2) / 3, abs=1e-3)
    low_fp = res["reward_low_FP_rate"]
    assert low_fp.raw == pytest.approx(tp - 0.986614 * 0.22 - 0.22, abs=1e-5)


def test_only_first_detection_in_a_window_counts_and_misses_cost_fn() -> None:
    f, scores = _file([8, 10, 11])  # earliest row 8 = window start -> exactly tpWeight
    pts = sweep_points(f.timestamps, scores, f.windows, f.name, DEFAULT_PROFILES["standard"])
    assert len(pts) == 17  # 20 rows - 3 probationary
    best = scores_by_threshold(pts, DEFAULT_PROFILES["standard"])
    assert best[0].threshold == 1.1 and best[0].score == -1.0  # nothing detected: one missed window
    assert max(s.score for s in best) == pytest.approx(1.0)


def test_perfect_and_null_detectors_normalise_to_100_and_0() -> None:
    f, perfect = _file([8])
    assert score_corpus([f], {f.name: perfect})["standard"].normalized == pytest.approx(100.0)
    # A constant detector: the sweep may also "detect everything" (threshold 0) when that beats detecting
    # nothing, as NAB does: window start (+1), 5 rows before the window (-0.11 each), rows 12..19 after it.
    after = sum((2 / (1 + math.exp(5 * k / 3)) - 1 if k / 3 < 3 else -1.0) * 0.11 for k in range(1, 9))
    everything = 1.0 - 5 * 0.11 + after
    res = score_corpus([f], {f.name: np.zeros(20)})["standard"]
    assert res.threshold == 0.0 and res.raw == pytest.approx(everything)
    assert res.normalized == pytest.approx(100 * (everything + 1) / 2)


def test_window_not_on_rows_is_a_clear_error() -> None:
    bad = NabFile("cat/f.csv", STAMPS, np.zeros(20), [(T0 + timedelta(minutes=1), STAMPS[3])])
    with pytest.raises(ValueError, match="window"):
        sweep_points(bad.timestamps, np.zeros(20), bad.windows, bad.name, DEFAULT_PROFILES["standard"])
