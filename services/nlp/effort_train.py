"""The story-point effort model the nlp service serves (``EstimateEffort``): training and loading.

Training (``python -m services.nlp.effort_train [--data DIR] [--out FILE]``): TF-IDF ridge candidates chosen
by validation MAE with :func:`services.nlp.effort.select_effort_model` (which keeps the train median unless
the text beats it by more than a standard error), pooled over every story-point CSV in
``../shared/data/storypoints`` (train split to fit, val split to choose; the test split is never read), then
refitted on train+val and written to ``FILE`` (default :data:`DEFAULT_MODEL`). A data folder without
story-point CSVs or without a train/val split is an error with a message, not a model.

Serving: :class:`EffortEstimator` ``.load(path)`` (None when the file is absent: the service then answers
``EstimateEffort`` with Unavailable and the command to run) and ``.estimate(title, description)`` -> points
(memoised per text). The model is TF-IDF only: no sentence embedder is loaded to serve it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
import pickle
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.nlp.effort import Candidate, EffortModel, clean_text, select_effort_model

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "storypoints"
DEFAULT_MODEL = REPO / ".cache" / "nlp" / "effort-model.pkl"
MODEL_NAME = "nlp-effort"
TRAIN_COMMAND = "python -m services.nlp.effort_train"
_FIELDS = {"title", "description", "storypoint", "split_mark"}
_FORMAT = "1"
_MEMO = 10_000


class EffortDataError(ValueError):
    """The data folder cannot train the model (no story-point CSVs, no train/val split)."""


def read_pooled(data_dir: Path) -> dict[str, tuple[list[str], list[float]]]:
    """split -> (texts, points) over every story-point CSV in ``data_dir`` (other CSVs are skipped)."""
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


def data_digest(data_dir: Path) -> str:
    h = hashlib.sha256(_FORMAT.encode())
    for path in sorted(data_dir.glob("*.csv")):
        h.update(f"{path.name}:{path.stat().st_size}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class TrainedEffort:
    version: str
    """the data digest: the same data gives the same version"""
    chosen: str
    val_mae: dict[str, float]


def train(data_dir: Path = DEFAULT_DATA, out: Path = DEFAULT_MODEL) -> TrainedEffort:
    """Fit the pooled model on ``data_dir`` and write it to ``out`` (see the module docstring)."""
    splits = read_pooled(data_dir) if data_dir.is_dir() else {}
    if not splits:
        raise EffortDataError(f"no story-point CSVs (title, description, storypoint, split_mark) in {data_dir}")
    if "train" not in splits or "val" not in splits:
        raise EffortDataError(f"{data_dir} has no train and val split (split_mark); found {sorted(splits)}")
    candidates = [Candidate("tfidf", "ridge", a, True) for a in (3.0, 10.0, 30.0)]
    (tx, ty), (vx, vy) = splits["train"], splits["val"]
    log.info("effort model: %d train and %d val issues from %s", len(tx), len(vx), data_dir)
    selection = select_effort_model(tx, np.asarray(ty), vx, np.asarray(vy), candidates)
    version = data_digest(data_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps({"format": _FORMAT, "version": version, "chosen": selection.chosen,
                                  "model": selection.model._state()}))
    tmp.replace(out)  # atomic: a service never reads half a file
    log.info("effort model %s (%s, validation MAE %.3f) written to %s", version, selection.chosen,
             selection.val_mae[selection.chosen], out)
    return TrainedEffort(version, selection.chosen, selection.val_mae)


class EffortEstimator:
    """The served model: story points from a title and description, never negative; memoised per text."""

    def __init__(self, model: EffortModel, version: str) -> None:
        if any(kind == "minilm" for kind in model.feature_kinds):
            raise ValueError("the served effort model must not need a sentence embedder")
        self._model = model
        self.version = version
        self._memo: dict[str, float] = {}

    @property
    def name(self) -> str:
        return MODEL_NAME

    @classmethod
    def load(cls, path: Path) -> EffortEstimator | None:
        """The model written by :func:`train` (a file this project wrote), or None when there is none."""
        if not path.is_file():
            return None
        state = pickle.loads(path.read_bytes())
        if state.get("format") != _FORMAT:
            raise ValueError(f"{path} was written by another version of effort_train; run `{TRAIN_COMMAND}`")
        return cls(EffortModel._from_state(state["model"], None), str(state["version"]))

    def estimate_many(self, texts: Sequence[tuple[str, str]]) -> list[float]:
        cleaned = [clean_text(title, description) for title, description in texts]
        todo = [t for t in dict.fromkeys(cleaned) if t not in self._memo]
        if todo:
            if len(self._memo) + len(todo) > _MEMO:
                self._memo.clear()
            pred = self._model.predict(todo)
            self._memo.update(zip(todo, (max(float(p), 0.0) for p in pred), strict=True))
        return [self._memo[t] for t in cleaned]

    def estimate(self, title: str, description: str = "") -> float:
        return self.estimate_many([(title, description)])[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=TRAIN_COMMAND, description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of story-point CSVs")
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL, help="where the service reads the model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        trained = train(args.data, args.out)
    except EffortDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"nlp effort model {trained.version}: {trained.chosen}, validation MAE "
          f"{trained.val_mae[trained.chosen]:.3f} -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
