"""The per-series streaming detector: causal (the future never changes a past score), finds a spike."""

from __future__ import annotations

import numpy as np

from services.anomaly.streaming import StreamingConfig, detect_series, suppress

CFG = StreamingConfig(history=300, refit_every=100, trees=10, long=300)


def _series(n: int = 900, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sin(np.arange(n) * 2 * np.pi / 50) + 0.1 * rng.normal(size=n)


def test_scores_do_not_depend_on_the_future() -> None:
    base = _series()
    changed = base.copy()
    changed[700:] += 50.0  # a huge shift from row 700 on
    a, b = detect_series(base, 150, CFG), detect_series(changed, 150, CFG)
    assert np.array_equal(a[:700], b[:700])
    assert not np.array_equal(a[700:], b[700:])


def test_a_spike_is_the_highest_score_after_probation() -> None:
    values = _series()
    values[600] += 8.0
    scores = detect_series(values, 150, CFG)
    assert scores[:150].max() == 0.0  # probationary rows are never alerts
    assert 600 <= int(np.argmax(scores)) <= 604


def test_suppression_keeps_one_alert_per_burst() -> None:
    prob = np.array([0.0, 0.999, 0.9995, 0.9999, 0.0, 0.0, 0.9999])
    out = suppress(prob, 0.999, rows=3)
    assert out.tolist() == [0.0, 0.999, 0.0, 0.0, 0.0, 0.0, 0.9999]
