"""The effort model as a prior for the task model: predicted story points from a task's title and
description, one static feature (``effort_points``, log1p of the points).

The model is `services.timeline.effort`'s (used read-only): TF-IDF candidates chosen by validation MAE
with `select_effort_model`, pooled over every project CSV in ``../shared/data/storypoints`` (train split to
fit, val split to choose), cached under ``.cache/timeline/``. Without the data folder the prior is a
constant (the feature then carries no information) and a message says so.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from services.timeline.effort_slot import CONSTANT_POINTS as CONSTANT_POINTS  # re-exported
from services.timeline.effort_slot import ConstantPrior as ConstantPrior
from services.timeline.effort_slot import EffortPrior as EffortPrior
from services.timeline.effort_slot import feature as feature

log = logging.getLogger(__name__)
FloatArray = NDArray[np.float64]
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "storypoints"
DEFAULT_CACHE = REPO / ".cache" / "timeline"
_FIELDS = {"title", "description", "storypoint", "split_mark"}
_CACHE_VERSION = "1"


class StoryPointPrior:
    """A fitted `EffortModel`; predictions are memoised per text (a task is featurised at every event)."""

    def __init__(self, model: object, name: str) -> None:
        self._model = model
        self._name = name
        self._memo: dict[str, float] = {}

    @property
    def name(self) -> str:
        return self._name

    def points(self, texts: Sequence[str]) -> FloatArray:
        from services.timeline.effort import EffortModel, clean_text

        assert isinstance(self._model, EffortModel)
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            pred = self._model.predict([clean_text(t) for t in todo])
            self._memo.update(zip(todo, (max(float(p), 0.0) for p in pred), strict=True))
        return np.asarray([self._memo[t] for t in texts], dtype=np.float64)


def read_pooled(data_dir: Path) -> dict[str, tuple[list[str], list[float]]]:
    """split -> (texts, points) over every story-point CSV in ``data_dir`` (other CSVs are skipped)."""
    from services.timeline.effort import clean_text

    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    out: dict[str, tuple[list[str], list[float]]] = {}
    for path in sorted(data_dir.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not set(reader.fieldnames or ()) >= _FIELDS:
                continue
            for row in reader:
                try:
                    points = float(row["storypoint"])
                except ValueError:
                    continue
                texts, ys = out.setdefault(row["split_mark"].strip(), ([], []))
                texts.append(clean_text(row["title"] or "", row["description"] or ""))
                ys.append(points)
    return out


def _digest(data_dir: Path) -> str:
    h = hashlib.sha256(_CACHE_VERSION.encode())
    for path in sorted(data_dir.glob("*.csv")):
        h.update(f"{path.name}:{path.stat().st_size}".encode())
    return h.hexdigest()[:16]


def load_effort_prior(data_dir: Path = DEFAULT_DATA, cache_dir: Path = DEFAULT_CACHE) -> EffortPrior:
    """The pooled story-point model (from the cache, else fitted and cached), or a `ConstantPrior` with a
    message when the data is absent."""
    if not data_dir.is_dir() or not any(data_dir.glob("*.csv")):
        log.warning("effort prior skipped: no story-point data at %s; the effort feature is the constant %.1f",
                    data_dir, CONSTANT_POINTS)
        return ConstantPrior()
    from services.timeline.effort import Candidate, EffortModel, select_effort_model

    digest = _digest(data_dir)
    name = f"storypoints-pooled:{digest}"
    path = cache_dir / f"effort_prior-{digest}.pkl"
    if path.exists():
        try:
            return StoryPointPrior(EffortModel.load(path), name)
        except Exception as exc:  # written by another version of effort.py: refit
            log.warning("cached effort prior %s unreadable (%s); refitting", path, exc)
    splits = read_pooled(data_dir)
    if "train" not in splits or "val" not in splits:
        log.warning("effort prior skipped: %s has no train/val split; the effort feature is constant", data_dir)
        return ConstantPrior()
    candidates = [Candidate("tfidf", "ridge", a, True) for a in (3.0, 10.0, 30.0)]
    (tx, ty), (vx, vy) = splits["train"], splits["val"]
    selection = select_effort_model(tx, np.asarray(ty), vx, np.asarray(vy), candidates)
    log.info("effort prior: pooled story-point model, validation MAE %s", selection.val_mae)
    selection.model.save(path)
    return StoryPointPrior(selection.model, name)
