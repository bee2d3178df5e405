"""Numenta Anomaly Benchmark (NAB v1.1) scoring, re-implemented to mean what NAB's numbers mean.

Follows `nab/sweeper.py` and `nab/runner.py` of numenta/NAB (AGPL/MIT-licensed upstream; re-written here,
not copied):

- **Windows.** Each labelled anomaly has a window (`labels/combined_windows.json`, inclusive limits).
  Inside a window a detection at row i scores `scaled_sigmoid(-(right - i + 1) / width) * tp / maxTP`
  where `maxTP = scaled_sigmoid(-1)`, so the earliest detection earns exactly `tpWeight`; only the best
  (earliest) detection of a window counts. A window with no detection costs `-fnWeight`.
- **False positives.** Outside windows a detection costs `scaled_sigmoid(|i - prevRight| / (prevWidth - 1))
  * fpWeight` after a window (a detection right after a window costs little), `-fpWeight` before any window.
- **Probationary period.** The first `min(floor(0.15 n), 0.15 * 5000)` rows of a file are not scored.
- **Threshold optimisation.** Per profile, ONE threshold for the whole corpus: sweep every distinct
  anomaly score (high to low, starting from 1.1 = no detection) over all files together and keep the
  threshold with the highest total raw score (`calcScoreByThreshold`). A point is a detection when its
  score is >= the threshold.
- **Normalisation.** `100 * (raw - null) / (perfect - null)` with `null` the raw score of the null detector
  (never detects: `-fnWeight` per window) and `perfect = tpWeight * number of windows`.
- **Profiles** come from `config/profiles.json` (standard, reward_low_FP_rate, reward_low_FN_rate).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

PROBATION_PERCENT = 0.15
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CostMatrix:
    """NAB application profile weights (`config/profiles.json`)."""

    tp: float
    fp: float
    fn: float


# The three profiles NAB ships (config/profiles.json); `load_profiles` reads the file when it is there.
DEFAULT_PROFILES: dict[str, CostMatrix] = {
    "standard": CostMatrix(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": CostMatrix(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": CostMatrix(tp=1.0, fp=0.11, fn=2.0),
}


def load_profiles(path: Path) -> dict[str, CostMatrix]:
    """Read NAB's `profiles.json` ({name: {"CostMatrix": {tpWeight, fpWeight, fnWeight, ...}}})."""
    raw = json.loads(path.read_text())
    out: dict[str, CostMatrix] = {}
    for name, body in raw.items():
        cm = body["CostMatrix"]
        out[name] = CostMatrix(tp=float(cm["tpWeight"]), fp=float(cm["fpWeight"]), fn=float(cm["fnWeight"]))
    return out


def scaled_sigmoid(relative_position: float) -> float:
    """NAB's weighting: 0.98661 at -1 (window start), 0 at the window end, -> -1 past it (-1 from 3.0)."""
    if relative_position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * relative_position)) - 1.0


def probationary_length(n_rows: int, percent: float = PROBATION_PERCENT) -> float:
    """Rows at the start of a file that are not scored (NAB: min(floor(p * n), p * 5000))."""
    return min(math.floor(percent * n_rows), percent * 5000)


@dataclass(frozen=True)
class ScoredPoint:
    """One row: the detector's score, what detecting it would be worth, and its window (None: outside)."""

    anomaly_score: float
    sweep_score: float
    window: str | None


def sweep_points(
    timestamps: Sequence[datetime],
    scores: Sequence[float] | FloatArray,
    windows: Sequence[tuple[datetime, datetime]],
    name: str,
    cost: CostMatrix,
) -> list[ScoredPoint]:
    """Per-row sweep scores of one file (NAB `calcSweepScore`); probationary rows are left out."""
    if len(timestamps) != len(scores):
        raise ValueError(f"{name}: {len(timestamps)} timestamps but {len(scores)} scores")
    index = {t: i for i, t in enumerate(timestamps)}
    pending = sorted(windows)
    for start, end in pending:
        if start not in index or end not in index:
            raise ValueError(f"{name}: window {start}..{end} does not start and end on rows of the file")
    max_tp = scaled_sigmoid(-1.0)
    probation = probationary_length(len(timestamps))
    out: list[ScoredPoint] = []
    cur: tuple[str, int, float] | None = None  # (name, right index, width)
    prev: tuple[int, float] | None = None  # (right index, width) of the last window left
    for i, (ts, value) in enumerate(zip(timestamps, scores, strict=True)):
        if cur is None and pending and ts == pending[0][0]:
            start, end = pending.pop(0)
            cur = (f"{name}|{start.isoformat()}", index[end], float(index[end] - i + 1))
        if cur is not None:
            weighted = scaled_sigmoid(-(cur[1] - i + 1) / cur[2]) * cost.tp / max_tp
        else:
            past = 3.0 if prev is None else abs(prev[0] - i) / (prev[1] - 1.0)
            weighted = scaled_sigmoid(past) * cost.fp
        if i >= probation:
            out.append(ScoredPoint(float(value), weighted, cur[0] if cur is not None else None))
        if cur is not None and i == cur[1]:
            prev, cur = (cur[1], cur[2]), None
    return out


@dataclass(frozen=True)
class ThresholdScore:
    threshold: float
    score: float
    tp: int
    fp: int


def scores_by_threshold(points: Sequence[ScoredPoint], cost: CostMatrix) -> list[ThresholdScore]:
    """Raw score at every distinct threshold, high to low, starting at 1.1 (NAB `calcScoreByThreshold`)."""
    ordered = sorted(points, key=lambda p: p.anomaly_score, reverse=True)
    parts: dict[str, float] = {p.window: -cost.fn for p in ordered if p.window is not None}
    fp_sum = 0.0
    window_sum = sum(parts.values())
    tp = fp = 0
    threshold = 1.1
    out: list[ThresholdScore] = []
    for p in ordered:
        if p.anomaly_score != threshold:
            out.append(ThresholdScore(threshold, fp_sum + window_sum, tp, fp))
            threshold = p.anomaly_score
        if p.window is None:
            fp += 1
            fp_sum += p.sweep_score
        else:
            tp += 1
            best = max(parts[p.window], p.sweep_score)
            window_sum += best - parts[p.window]
            parts[p.window] = best
    out.append(ThresholdScore(threshold, fp_sum + window_sum, tp, fp))
    return out


def score_at(points: Sequence[ScoredPoint], cost: CostMatrix, threshold: float) -> float:
    """Raw score of detections `score >= threshold` (NAB `scoreDataSet` with a given threshold)."""
    windows: dict[str, float] = {p.window: -cost.fn for p in points if p.window is not None}
    fp_sum = 0.0
    for p in points:
        if p.anomaly_score < threshold:
            continue
        if p.window is None:
            fp_sum += p.sweep_score
        else:
            windows[p.window] = max(windows[p.window], p.sweep_score)
    return fp_sum + sum(windows.values())


@dataclass(frozen=True)
class NabFile:
    """One NAB data file with its labelled windows."""

    name: str  # relative path, e.g. "realKnownCause/nyc_taxi.csv"
    timestamps: list[datetime]
    values: FloatArray
    windows: list[tuple[datetime, datetime]]

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.strip())


def load_corpus(root: Path, only: Sequence[str] | None = None) -> list[NabFile]:
    """Read `root/data/**.csv` and `root/labels/combined_windows.json` (files without labels are skipped)."""
    labels_path = root / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise FileNotFoundError(f"{labels_path} missing: not a NAB-format folder (data/, labels/)")
    windows: dict[str, list[list[str]]] = json.loads(labels_path.read_text())
    files: list[NabFile] = []
    for name in sorted(windows):
        if only is not None and name not in only:
            continue
        path = root / "data" / name
        if not path.is_file():
            continue
        stamps: list[datetime] = []
        values: list[float] = []
        with path.open() as fh:
            header = fh.readline().strip().split(",")
            if header[:2] != ["timestamp", "value"]:
                raise ValueError(f"{path}: header {header} is not timestamp,value")
            for line in fh:
                ts, val = line.rstrip("\n").split(",")[:2]
                stamps.append(_parse_ts(ts))
                values.append(float(val))
        limits = [(_parse_ts(a), _parse_ts(b)) for a, b in windows[name]]
        files.append(NabFile(name, stamps, np.asarray(values, dtype=np.float64), limits))
    return files


@dataclass(frozen=True)
class ProfileResult:
    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float
    per_file_raw: dict[str, float]


def normalized(raw: float, null: float, perfect: float) -> float:
    return 100.0 * (raw - null) / (perfect - null)


def score_corpus(
    files: Sequence[NabFile],
    detections: Mapping[str, FloatArray],
    profiles: Mapping[str, CostMatrix] = DEFAULT_PROFILES,
) -> dict[str, ProfileResult]:
    """Optimise one threshold per profile over all files, score each file at it, normalise (null/perfect)."""
    n_windows = sum(len(f.windows) for f in files)
    results: dict[str, ProfileResult] = {}
    for pname, cost in profiles.items():
        per_file = {f.name: sweep_points(f.timestamps, detections[f.name], f.windows, f.name, cost) for f in files}
        every = [p for pts in per_file.values() for p in pts]
        best = max(scores_by_threshold(every, cost), key=lambda s: s.score)
        raw_by_file = {name: score_at(pts, cost, best.threshold) for name, pts in per_file.items()}
        null = sum(score_at(pts, cost, math.inf) for pts in per_file.values())
        perfect = n_windows * cost.tp
        raw = sum(raw_by_file.values())
        results[pname] = ProfileResult(pname, best.threshold, raw, null, perfect,
                                       normalized(raw, null, perfect), raw_by_file)
    return results
