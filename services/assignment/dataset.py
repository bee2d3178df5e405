"""The training set: events replayed in time order through the service's own feature path (state ->
online rows -> batched read), features as of each task's creation (point in time), labelled by the
person the task was then assigned to. One list of candidates per task. The events come from a
simulator run or from the offline event log the feature ingestor writes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from mesh.events import Envelope, occurred_at
from mesh.models import events_from_log as mesh_events_from_log
from mesh.models import time_split
from services.assignment.features import N_FEATURES, Matrix, feature_matrix
from services.assignment.online import OnlineFeatures, candidate_rows
from services.assignment.state import EVENT_TYPES, Label, StateStore, labels_of

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


class _Lists:
    def __init__(self) -> None:
        self.xs: list[Matrix] = []
        self.sizes: list[int] = []
        self.relevant: list[int] = []
        self.created: list[datetime] = []
        self.task_ids: list[str] = []

    def add(self, item: _Pending, label: Label) -> None:
        if label.user_id not in item.candidates:
            return  # assigned outside the people known at creation: no list
        self.xs.append(item.x)
        self.sizes.append(len(item.candidates))
        self.relevant.append(item.candidates.index(label.user_id))
        self.created.append(item.created_at)
        self.task_ids.append(f"{label.tenant_id}:{label.task_id}")

    def ranking_set(self) -> RankingSet:
        x = np.concatenate(self.xs) if self.xs else np.zeros((0, N_FEATURES), np.float32)
        return RankingSet(x, np.asarray(self.sizes, np.int64), np.asarray(self.relevant, np.int64),
                          tuple(self.created), tuple(self.task_ids))


def build_dataset(events: Iterable[Envelope], min_candidates: int = 2) -> RankingSet:
    """Replay ``events`` (time-ordered) the way the service consumes them; one list per task whose first
    label (its first assignee, or whoever completed it when no assignment came first) was among the
    active people of its tenant when it was created."""
    state = StateStore()
    online = OnlineFeatures(state)
    pending: dict[tuple[str, str], _Pending] = {}
    lists = _Lists()
    for env in events:
        state.apply([env])
        for label in labels_of(state, [env]):
            item = pending.pop((label.tenant_id, label.task_id), None)
            if item is not None:
                lists.add(item, label)
        if env.type == "task_created":
            task = online.task(env.tenant_id, env.task_created.task_id)
            people = candidate_rows(state, online, env.tenant_id)
            if task is not None and len(people) >= min_candidates:
                pending[(env.tenant_id, task.task_id)] = _Pending(
                    feature_matrix(task, people), [p.user_id for p in people], occurred_at(env))
    return lists.ranking_set()


def events_from_log(root: Path) -> list[Envelope]:
    """The offline event log (written by the feature ingestor) as one time-ordered stream of the events
    that change assignment features (see `mesh.models.events_from_log`)."""
    return mesh_events_from_log(root, EVENT_TYPES)


@dataclass(frozen=True)
class Split:
    train: RankingSet
    val: RankingSet
    test: RankingSet
    val_start: datetime
    test_start: datetime


def split_by_week(data: RankingSet, val_weeks: int = 1, test_weeks: int = 1) -> Split:
    """Time-ordered split by the week of task creation (`mesh.models.time_split`): the latest ``test_weeks``
    are the test period, the ``val_weeks`` before them validation, everything earlier training."""
    if not len(data):
        raise ValueError("no labelled tasks to split")
    # the newest list ends the last test week (it belongs to it)
    end = max(data.created_at) + timedelta(microseconds=1)
    parts = time_split(data.created_at, timedelta(weeks=val_weeks), timedelta(weeks=test_weeks), end)
    return Split(data.subset(parts.train), data.subset(parts.val), data.subset(parts.test), parts.val_start,
                 parts.test_start)
