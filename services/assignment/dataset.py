"""The training set: events replayed in time order, features as of each task's creation (point in time),
labelled by the person the task was then assigned to. One list of candidates per task."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from mesh.events import Envelope, occurred_at
from services.assignment.features import N_FEATURES, Matrix, feature_matrix
from services.assignment.state import InMemoryFeatureStore, apply_event

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class RankingSet:
    """Lists of candidates: rows of ``x`` cut by ``sizes``; ``relevant[g]`` indexes into list ``g``."""

    x: Matrix
    sizes: IntArray
    relevant: IntArray
    created_at: tuple[datetime, ...]
    task_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def offsets(self) -> IntArray:
        return np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def labels(self) -> npt.NDArray[np.float32]:
        """1 for each list's relevant row, 0 elsewhere (LightGBM's relevance labels)."""
        y = np.zeros(len(self.x), dtype=np.float32)
        y[self.offsets[:-1] + self.relevant] = 1.0
        return y

    def subset(self, groups: Sequence[int] | IntArray) -> RankingSet:
        off = self.offsets
        idx = [int(g) for g in groups]
        rows = np.concatenate([np.arange(off[g], off[g + 1]) for g in idx]) if idx else np.zeros(0, np.int64)
        return RankingSet(self.x[rows] if idx else np.zeros((0, N_FEATURES), np.float32), self.sizes[idx],
                          self.relevant[idx], tuple(self.created_at[g] for g in idx),
                          tuple(self.task_ids[g] for g in idx))

    def time_range(self) -> tuple[datetime, datetime]:
        return min(self.created_at), max(self.created_at)


@dataclass
class _Pending:
    x: Matrix
    candidates: list[str]
    created_at: datetime


def build_dataset(events: Iterable[Envelope], min_candidates: int = 2) -> RankingSet:
    """Replay ``events`` (time-ordered) through the feature state; one list per task whose first
    assignee was among the active people of its tenant when it was created."""
    store = InMemoryFeatureStore()
    pending: dict[tuple[str, str], _Pending] = {}
    xs: list[Matrix] = []
    sizes: list[int] = []
    relevant: list[int] = []
    created: list[datetime] = []
    task_ids: list[str] = []
    for env in events:
        if env.type == "task_assigned":
            item = pending.pop((env.tenant_id, env.task_assigned.task_id), None)
            if item is not None and env.task_assigned.assignee_id in item.candidates:
                xs.append(item.x)
                sizes.append(len(item.candidates))
                relevant.append(item.candidates.index(env.task_assigned.assignee_id))
                created.append(item.created_at)
                task_ids.append(f"{env.tenant_id}:{env.task_assigned.task_id}")
        apply_event(store, env)
        if env.type == "task_created":
            record = store.task(env.tenant_id, env.task_created.task_id)
            people = store.people(env.tenant_id)
            if record is not None and len(people) >= min_candidates:
                pending[(env.tenant_id, record.features.task_id)] = _Pending(
                    feature_matrix(record.features, people), [p.user_id for p in people], occurred_at(env))
    x = np.concatenate(xs) if xs else np.zeros((0, N_FEATURES), np.float32)
    return RankingSet(x, np.asarray(sizes, np.int64), np.asarray(relevant, np.int64), tuple(created), tuple(task_ids))


@dataclass(frozen=True)
class Split:
    train: RankingSet
    val: RankingSet
    test: RankingSet
    val_start: datetime
    test_start: datetime


def split_by_week(data: RankingSet, val_weeks: int = 1, test_weeks: int = 1) -> Split:
    """Time-ordered split by the week of task creation: the latest ``test_weeks`` are the test period,
    the ``val_weeks`` before them validation, everything earlier training."""
    if not len(data):
        raise ValueError("no labelled tasks to split")
    last = max(data.created_at)
    week_end = last + timedelta(microseconds=1)
    test_start = week_end - timedelta(weeks=test_weeks)
    val_start = test_start - timedelta(weeks=val_weeks)
    at = np.asarray([c.timestamp() for c in data.created_at])
    parts = [np.flatnonzero(at < val_start.timestamp()),
             np.flatnonzero((at >= val_start.timestamp()) & (at < test_start.timestamp())),
             np.flatnonzero(at >= test_start.timestamp())]
    if any(len(p) == 0 for p in parts):
        raise ValueError(f"a split is empty (train/val/test lists: {[len(p) for p in parts]}); simulate more weeks")
    return Split(data.subset(parts[0]), data.subset(parts[1]), data.subset(parts[2]), val_start, test_start)
