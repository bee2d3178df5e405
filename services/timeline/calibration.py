"""Interval calibration: split-conformal adjustment of Monte-Carlo-dropout quantiles.

MC dropout measures model uncertainty only, so its p10-p90 band is usually too narrow. On a validation
period (later than the training data) we compute one conformity score per outcome and widen (or narrow)
every interval by the score's finite-sample quantile, so that the 80% interval covers ~80% of outcomes
that come from the same distribution. All values are on the model's log scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
Method = Literal["scale", "shift"]
_EPS = 1e-6


def interval_coverage(y: ArrayLike, lo: ArrayLike, hi: ArrayLike) -> float:
    """Fraction of outcomes inside their closed interval [lo, hi]."""
    y_, lo_, hi_ = (np.asarray(a, dtype=np.float64) for a in (y, lo, hi))
    if not (y_.shape == lo_.shape == hi_.shape) or y_.size == 0:
        raise ValueError(f"need equal, non-empty shapes, got {y_.shape}, {lo_.shape}, {hi_.shape}")
    return float(np.mean((y_ >= lo_) & (y_ <= hi_)))


def _conformal_quantile(scores: FloatArray, coverage: float) -> float:
    n = scores.size
    level = min(1.0, math.ceil((n + 1) * coverage) / n)
    return float(np.quantile(scores, level, method="higher"))


@dataclass(frozen=True)
class ConformalCalibrator:
    """Maps raw (p10, p50, p90) to a calibrated (lo, p50, hi).

    `scale`: lo = p50 - q * (p50 - p10), hi = p50 + q * (p90 - p50) (keeps the model's per-sample widths).
    `shift`: lo = p10 - q, hi = p90 + q (conformalised quantile regression).
    """

    method: Method
    q: float
    """the conformal quantile of the validation scores"""
    coverage: float
    """target coverage of the interval, e.g. 0.8 for p10-p90"""

    def apply(self, p10: ArrayLike, p50: ArrayLike, p90: ArrayLike) -> tuple[FloatArray, FloatArray]:
        lo, mid, hi = (np.asarray(a, dtype=np.float64) for a in (p10, p50, p90))
        if self.method == "shift":
            new_lo, new_hi = lo - self.q, hi + self.q
        else:
            new_lo = mid - self.q * np.maximum(mid - lo, _EPS)
            new_hi = mid + self.q * np.maximum(hi - mid, _EPS)
        return np.minimum(new_lo, mid), np.maximum(new_hi, mid)


def fit_conformal(
    y: ArrayLike, p10: ArrayLike, p50: ArrayLike, p90: ArrayLike,
    coverage: float = 0.8, method: Method = "scale",
) -> ConformalCalibrator:
    """Fit the adjustment on validation outcomes `y` and their raw quantiles (same log scale)."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    y_, lo, mid, hi = (np.asarray(a, dtype=np.float64) for a in (y, p10, p50, p90))
    if y_.size == 0:
        raise ValueError("no validation outcomes to calibrate on")
    if method == "shift":
        scores = np.maximum(lo - y_, y_ - hi)
    else:
        scores = np.maximum((mid - y_) / np.maximum(mid - lo, _EPS), (y_ - mid) / np.maximum(hi - mid, _EPS))
    return ConformalCalibrator(method, _conformal_quantile(scores, coverage), coverage)
