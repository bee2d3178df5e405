"""Real process logs (``CaseID,ActivityID,CompleteTimestamp``, e.g. the Helpdesk log of Tax et al., CAiSE
2017) as next-activity prefixes, split by time the way Tax et al. did: cases ordered by their first event,
the first two thirds for training (its last fifth for validation), the last third for test.

A prefix is the first ``k >= 1`` events of a case; its target is the next activity, or :data:`END_TOKEN`
after the last event (predicting the end of the case is part of the task, as in Tax et al.). Each event
also carries four time features (hours since the previous event and since the case start, both log1p;
time of day and weekday, scaled to [0, 1)), as Tax et al.'s LSTM had.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

END_TOKEN = "<end>"
PAD_ID = 0
N_TIME_FEATURES = 4
COLUMNS = ("CaseID", "ActivityID", "CompleteTimestamp")


class ProcessLogError(ValueError):
    """The file is not a ``CaseID,ActivityID,CompleteTimestamp`` log."""


@dataclass(frozen=True)
class Case:
    case_id: str
    activities: tuple[str, ...]
    times: tuple[datetime, ...]


@dataclass(frozen=True)
class Vocabulary:
    """Token <-> id; id 0 is padding, the last id is :data:`END_TOKEN`."""

    tokens: tuple[str, ...]

    @classmethod
    def build(cls, sequences: Sequence[Sequence[str]]) -> Vocabulary:
        seen = sorted({t for seq in sequences for t in seq if t != END_TOKEN})
        return cls(("<pad>", *seen, END_TOKEN))

    def id(self, token: str) -> int:
        return self._index().get(token, PAD_ID)

    def _index(self) -> dict[str, int]:
        cache: dict[str, int] | None = self.__dict__.get("_cache")
        if cache is None:
            cache = {t: i for i, t in enumerate(self.tokens)}
            object.__setattr__(self, "_cache", cache)
        return cache

    @property
    def size(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Prefixes:
    """Left-padded prefixes: ``activities`` [n, T] int64, ``times`` [n, T, 4] float32, ``targets`` [n]."""

    activities: npt.NDArray[np.int64]
    times: npt.NDArray[np.float32]
    targets: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.targets.shape[0])

    def subset(self, mask: npt.NDArray[np.bool_]) -> Prefixes:
        return Prefixes(self.activities[mask], self.times[mask], self.targets[mask], self.lengths[mask])


@dataclass(frozen=True)
class LogSplit:
    train: list[Case]
    val: list[Case]
    test: list[Case]


def find_log(path: Path) -> Path:
    """``path`` itself when it is a file, else the single ``*.csv`` in the folder."""
    if path.is_file():
        return path
    files = sorted(path.glob("*.csv"))
    if len(files) != 1:
        raise ProcessLogError(f"{path}: expected one .csv process log, found {[f.name for f in files]}")
    return files[0]


def read_cases(path: Path) -> list[Case]:
    """Cases of a ``CaseID,ActivityID,CompleteTimestamp`` CSV, events in time order within a case."""
    rows: dict[str, list[tuple[datetime, int, str]]] = defaultdict(list)
    with find_log(path).open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in COLUMNS):
            raise ProcessLogError(f"{path}: columns {reader.fieldnames}, need {list(COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            try:
                at = datetime.fromisoformat(row["CompleteTimestamp"])
            except ValueError as error:
                raise ProcessLogError(f"{path}:{line}: bad timestamp {row['CompleteTimestamp']!r}") from error
            rows[row["CaseID"]].append((at, line, row["ActivityID"]))
    cases = []
    for case_id, events in rows.items():
        events.sort()
        cases.append(Case(case_id, tuple(a for _, _, a in events), tuple(t for t, _, _ in events)))
    return cases


def split_cases(cases: Sequence[Case], val_share: float = 0.2) -> LogSplit:
    """Cases by first event: first 2/3 train (its last ``val_share`` validation), last 1/3 test."""
    ordered = sorted(cases, key=lambda c: (c.times[0], c.case_id))
    cut = (2 * len(ordered)) // 3
    val_cut = int(cut * (1.0 - val_share))
    if val_cut == 0 or cut == val_cut or cut == len(ordered):
        raise ProcessLogError(f"too few cases to split ({len(ordered)})")
    return LogSplit(list(ordered[:val_cut]), list(ordered[val_cut:cut]), list(ordered[cut:]))


def time_features(times: Sequence[datetime]) -> npt.NDArray[np.float32]:
    """[len(times), 4]: log1p hours since previous / since start, time of day, weekday."""
    out = np.zeros((len(times), N_TIME_FEATURES), dtype=np.float32)
    for i, t in enumerate(times):
        prev = times[i - 1] if i else t
        out[i, 0] = np.log1p(max((t - prev).total_seconds(), 0.0) / 3600.0)
        out[i, 1] = np.log1p(max((t - times[0]).total_seconds(), 0.0) / 3600.0)
        out[i, 2] = (t.hour * 3600 + t.minute * 60 + t.second) / 86400.0
        out[i, 3] = t.weekday() / 7.0
    return out


def prefixes(cases: Sequence[Case], vocab: Vocabulary, min_length: int = 1) -> Prefixes:
    """Every prefix of length ``>= min_length`` of every case, with its next activity (or the end)."""
    items: list[tuple[list[int], npt.NDArray[np.float32], int]] = []
    for case in cases:
        ids = [vocab.id(a) for a in case.activities]
        feats = time_features(case.times)
        for k in range(min_length, len(ids) + 1):
            target = ids[k] if k < len(ids) else vocab.id(END_TOKEN)
            items.append((ids[:k], feats[:k], target))
    return pad(items)


def pad(items: Sequence[tuple[Sequence[int], npt.NDArray[np.float32], int]]) -> Prefixes:
    width = max((len(ids) for ids, _, _ in items), default=1)
    acts = np.zeros((len(items), width), dtype=np.int64)
    times = np.zeros((len(items), width, N_TIME_FEATURES), dtype=np.float32)
    for row, (ids, feats, _) in enumerate(items):
        if ids:
            acts[row, width - len(ids):] = ids
            times[row, width - len(ids):] = feats
    targets = np.asarray([t for _, _, t in items], dtype=np.int64)
    lengths = np.asarray([len(ids) for ids, _, _ in items], dtype=np.int64)
    return Prefixes(acts, times, targets, lengths)


def most_frequent_next(train: Prefixes, vocab_size: int) -> npt.NDArray[np.int64]:
    """Baseline table: for each last activity, its most frequent next activity in training."""
    counts = np.zeros((vocab_size, vocab_size), dtype=np.int64)
    np.add.at(counts, (train.activities[:, -1], train.targets), 1)
    overall = int(np.bincount(train.targets, minlength=vocab_size).argmax())
    table = counts.argmax(axis=1)
    table[counts.sum(axis=1) == 0] = overall
    out: npt.NDArray[np.int64] = table.astype(np.int64)
    return out
