"""Per-series streaming detector: the ensemble's idea on one univariate metric (the NAB bench detector).

Causal by construction: the score of row t uses rows <= t only (a test changes the future and checks).

Pipeline, per series:
1. **Embedding.** Row t is the window of its last `lag` values, scaled by the median/IQR of the history the
   models are fitted on (so a level shift or a spike moves the vector).
2. **Two models, refitted every `refit_every` rows on the trailing `history` embeddings** (never on the block
   they score): an Isolation Forest (score = -score_samples) and a linear autoencoder (PCA keeping
   `pca_variance` of the variance; score = reconstruction error) - the streaming stand-in of the service's
   LSTM autoencoder, cheap enough to refit hundreds of times per series.
3. **Per-series normalisation.** Each model's scores are z-scored against that model's own scores on its
   training history (median / MAD), so neither model dominates and a noisy series is judged by its own
   baseline (the per-tenant normalisation of the service, at series level). Ensemble = weighted mean.
4. **Anomaly likelihood** (as Numenta's detectors post-process): the mean of the last `short` ensemble
   scores against the mean/std of the last `long` ones, as a Gaussian tail probability.
5. **Alert suppression.** After a row whose likelihood reaches `fire_at`, the next `suppress_fraction * n`
   rows output 0: one alert per incident, not one per row (what the alert engine's cooldown does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import special  # type: ignore[import-untyped]
from sklearn.ensemble import IsolationForest

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class StreamingConfig:
    """Settings of the per-series detector (chosen on the validation half of NAB, see bench/anomaly.py)."""

    lag: int = 8
    """Values per embedding vector (the window the models see)."""
    history: int = 1000
    """Trailing rows the models are fitted on."""
    refit_every: int = 300
    """Rows scored by one fitted pair of models before they are refitted on the newer history."""
    trees: int = 40
    """Isolation Forest trees."""
    pca_variance: float = 0.95
    """Variance the linear autoencoder keeps."""
    weight_iforest: float = 0.5
    """Ensemble weight of the Isolation Forest (the autoencoder gets 1 - this)."""
    short: int = 5
    """Rows averaged for the likelihood's recent level."""
    long: int = 2000
    """Rows of ensemble score the likelihood compares the recent level with."""
    min_std: float = 1.0
    """Floor of the trailing score std in the likelihood (robust z units)."""
    fire_at: float = 0.999
    """Likelihood from which a row is an alert (then the suppression starts)."""
    suppress_fraction: float = 0.05
    """Rows silenced after an alert, as a fraction of the series length."""
    seed: int = 0


def _embed(values: FloatArray, lag: int) -> FloatArray:
    padded = np.concatenate([np.full(lag - 1, values[0]), values])
    return np.lib.stride_tricks.sliding_window_view(padded, lag).astype(np.float64)


def _robust_z(scores: FloatArray, reference: FloatArray) -> FloatArray:
    med = float(np.median(reference))
    mad = float(np.median(np.abs(reference - med))) * 1.4826
    return (scores - med) / max(mad, 1e-9)


def _pca_error(train: FloatArray, ref: FloatArray, block: FloatArray, keep: float) -> tuple[FloatArray, FloatArray]:
    mean = train.mean(axis=0)
    _, s, vt = np.linalg.svd(train - mean, full_matrices=False)
    var = s**2
    k = int(np.searchsorted(np.cumsum(var) / max(float(var.sum()), 1e-12), keep) + 1)
    basis = vt[: min(k, vt.shape[0])]

    def err(x: FloatArray) -> FloatArray:
        c = x - mean
        return np.asarray(((c - (c @ basis.T) @ basis) ** 2).sum(axis=1), dtype=np.float64)

    return err(ref), err(block)


def model_scores(values: FloatArray, start: int, cfg: StreamingConfig) -> FloatArray:
    """(2, n): per-row robust z of the Isolation Forest and the autoencoder, fitted on earlier rows only."""
    n = len(values)
    emb = _embed(values, cfg.lag)
    rng = np.random.default_rng(cfg.seed)
    out = np.zeros((2, n), dtype=np.float64)
    t = max(start, cfg.lag + 10)
    while t < n:
        lo, hi = max(0, t - cfg.history), min(n, t + cfg.refit_every)
        hist_vals = values[lo:t]
        med = float(np.median(hist_vals))
        iqr = float(np.subtract(*np.percentile(hist_vals, [75, 25])))
        scale = iqr if iqr > 1e-9 else max(float(np.std(hist_vals)), 1e-9)
        train, block = (emb[lo:t] - med) / scale, (emb[t:hi] - med) / scale
        forest = IsolationForest(n_estimators=cfg.trees, max_samples=min(256, len(train)),
                                 random_state=cfg.seed).fit(train)
        # The models' own scores on (a sample of) their training rows are the baseline each is judged by.
        ref = train[rng.choice(len(train), size=min(len(train), 300), replace=False)]
        if_ref, if_block = -forest.score_samples(ref), -forest.score_samples(block)
        ae_ref, ae_block = _pca_error(train, ref, block, cfg.pca_variance)
        out[0, t:hi] = _robust_z(if_block, if_ref)
        out[1, t:hi] = _robust_z(ae_block, ae_ref)
        t = hi
    return out


def likelihood(scores: FloatArray, start: int, cfg: StreamingConfig) -> FloatArray:
    """Gaussian tail probability of the recent mean score given the trailing `long` scores (0 before start).

    The trailing std is floored at `min_std` (the scores are robust z units): on a noise-free series the
    scores barely move and an unfloored std would turn every wobble into certainty.
    """
    n = len(scores)
    csum = np.concatenate([[0.0], np.cumsum(scores)])
    csq = np.concatenate([[0.0], np.cumsum(scores**2)])
    t = np.arange(n)
    lo = np.maximum(start, t - cfg.long)
    count = t - lo
    ready = (count >= 20) & (t >= start)
    safe = np.maximum(count, 1)
    mean = (csum[t] - csum[lo]) / safe
    var = np.maximum((csq[t] - csq[lo]) / safe - mean * mean, 0.0)
    std = np.maximum(np.sqrt(var), cfg.min_std)
    s0 = np.maximum(0, t - cfg.short + 1)
    recent = (csum[t + 1] - csum[s0]) / (t + 1 - s0)
    z = np.where(ready, (recent - mean) / std, -np.inf)
    return np.asarray(0.5 * special.erfc(-z / math.sqrt(2.0)), dtype=np.float64)


def suppress(probability: FloatArray, fire_at: float, rows: int) -> FloatArray:
    """Keep an alerting row, zero the `rows` after it (one alert per incident)."""
    out = probability.copy()
    quiet_until = -1
    for t in range(len(out)):
        if t <= quiet_until:
            out[t] = 0.0
        elif out[t] >= fire_at:
            quiet_until = t + rows
    return out


def detect_series(values: FloatArray, probation: int, cfg: StreamingConfig) -> FloatArray:
    """Anomaly score in [0, 1] per row of one series (0 during the first `probation` rows)."""
    both = model_scores(np.asarray(values, dtype=np.float64), probation, cfg)
    scores = cfg.weight_iforest * both[0] + (1 - cfg.weight_iforest) * both[1]
    prob = likelihood(scores, probation, cfg)
    return suppress(prob, cfg.fire_at, max(1, int(cfg.suppress_fraction * len(values))))
