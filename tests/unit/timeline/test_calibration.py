from __future__ import annotations

import numpy as np
import pytest

from services.timeline.calibration import fit_conformal, interval_coverage


def test_interval_coverage_counts_closed_intervals() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    lo = np.array([0.0, 2.0, 3.5, 0.0, 6.0])
    hi = np.array([2.0, 3.0, 4.0, 3.9, 7.0])
    # inside, on the lower edge, below, above, below
    assert interval_coverage(y, lo, hi) == pytest.approx(0.4)


def test_interval_coverage_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError):
        interval_coverage([1.0, 2.0], [0.0], [3.0, 3.0])


def _overconfident_predictor(n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Log-scale outcomes with noise sd 0.5 (heteroscedastic), quantiles that claim sd 0.15."""
    x = rng.uniform(0, 3, n)
    scale = 0.3 + 0.2 * x
    y = x + scale * rng.standard_normal(n)
    claimed = 0.3 * scale
    return y, x - 1.2816 * claimed, x, x + 1.2816 * claimed


@pytest.mark.parametrize("method", ["scale", "shift"])
def test_conformal_calibration_fixes_coverage_on_held_out_data(method: str) -> None:
    rng = np.random.default_rng(7)
    y_val, lo_val, mid_val, hi_val = _overconfident_predictor(2000, rng)
    y_te, lo_te, mid_te, hi_te = _overconfident_predictor(4000, rng)
    assert interval_coverage(y_te, lo_te, hi_te) < 0.5  # the raw intervals are far too narrow

    cal = fit_conformal(y_val, lo_val, mid_val, hi_val, coverage=0.8, method=method)  # type: ignore[arg-type]
    lo, hi = cal.apply(lo_te, mid_te, hi_te)
    assert 0.75 <= interval_coverage(y_te, lo, hi) <= 0.85
    assert np.all(lo <= mid_te) and np.all(mid_te <= hi)


def test_conformal_narrows_intervals_that_are_too_wide() -> None:
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 1, 3000)
    y = x + 0.1 * rng.standard_normal(3000)
    cal = fit_conformal(y[:1500], x[:1500] - 1.0, x[:1500], x[:1500] + 1.0)
    lo, hi = cal.apply(x[1500:] - 1.0, x[1500:], x[1500:] + 1.0)
    assert cal.q < 1.0
    assert 0.75 <= interval_coverage(y[1500:], lo, hi) <= 0.85
