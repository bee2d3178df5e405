"""The milestone model's features, training set and serving: a milestone's open tasks as of ``now`` ->
``MilestoneNet`` (attention pooling over the tasks) -> days until the milestone completes.

Each open task of the milestone is one row: the task model's static features (`features.static_vector`,
read from the same state the service keeps) plus the milestone's own columns (signed log days to its due
date, has a due date, overdue, log open-task count), padded to ``MAX_TASKS`` rows with a mask. One
function (`milestone_inputs`) builds them for training and for serving, so training == serving.

The training set (`build_milestone_dataset`) replays events in time order through the service's state and
probes every open milestone once a day (state as of the probe, before any later event); the label is the
simulator's truth: log1p(days until the milestone really completed). Milestones that had not completed by
the end of the simulated horizon have no label and give no sample.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mesh.events import Envelope, occurred_at
from mesh.models import FeatureSchema, OnnxModel, VersionedModel, check_feature_schema
from services.timeline.features import FEATURE_SCHEMA, N_STATIC, STATIC_NAMES, task_inputs
from services.timeline.state import InMemoryTimelineStore, MilestoneState, TaskState, TimelineStore, apply_event
from services.timeline.tensors import F32, MILESTONE_OUTPUT, pad_sequences

log = logging.getLogger(__name__)
MILESTONE_MODEL_NAME = "timeline-milestone"
"""The registered milestone model (its ``champion`` alias is served)."""
MILESTONE_SCHEMA = f"{FEATURE_SCHEMA}+milestone-v1"
MILESTONE_COLUMNS = ("milestone_due_in", "milestone_has_due", "milestone_overdue", "milestone_open_tasks")
N_MILESTONE_FEATURES = N_STATIC + len(MILESTONE_COLUMNS)
MILESTONE_FEATURES = FeatureSchema(MILESTONE_SCHEMA, (*STATIC_NAMES, *MILESTONE_COLUMNS))
"""The feature layout the served milestone model must record (checked when it is loaded)."""
MAX_TASKS = 64
"""Rows per milestone (the oldest open tasks first); the open-task count column keeps the true count."""
MKey = tuple[str, str]
"""(tenant id, milestone id)"""


def milestone_tasks(store: TimelineStore, tenant_id: str, task_ids: Sequence[str],
                    milestone_id: str) -> list[TaskState]:
    """The milestone's open tasks among ``task_ids`` (a project's), oldest first."""
    return ordered(t for t in store.tasks(tenant_id, list(task_ids)) if t.is_open and t.milestone_id == milestone_id)


def ordered(tasks: Iterable[TaskState]) -> list[TaskState]:
    """Oldest first: the rows kept when a milestone has more than ``MAX_TASKS`` open tasks."""
    return sorted(tasks, key=lambda t: (t.created_at, t.task_id))


def milestone_inputs(store: TimelineStore, tenant_id: str, tasks: Sequence[TaskState], milestone: MilestoneState,
                     now: datetime) -> F32:
    """[min(len(tasks), MAX_TASKS), N_MILESTONE_FEATURES] rows of one milestone as of ``now``."""
    kept = list(tasks)[:MAX_TASKS]
    static = task_inputs(store, tenant_id, kept, now).static
    due = None if milestone.due_at is None else (milestone.due_at - now).total_seconds() / 86400.0
    extra = np.asarray([0.0 if due is None else math.copysign(math.log1p(abs(due)), due),
                        float(due is not None), float(due is not None and due < 0), math.log1p(len(tasks))],
                       dtype=np.float32)
    return np.concatenate([static, np.tile(extra, (len(kept), 1))], axis=1).astype(np.float32)


def pad_milestones(rows: Sequence[F32]) -> tuple[F32, F32]:
    """[B, T_max, F] task rows and [B, T_max] mask (1.0 on real tasks)."""
    return pad_sequences(rows, N_MILESTONE_FEATURES)


@dataclass(frozen=True)
class MilestoneSamples:
    """One sample per (open milestone, probe day); ``y`` is log1p(days until it really completed)."""

    rows: tuple[F32, ...]
    y: NDArray[np.float64]
    at: tuple[datetime, ...]
    keys: tuple[MKey, ...]
    due_days: NDArray[np.float64]
    """days from the probe to the milestone's due date, 0 when already overdue (nan without a due date):
    the naive baseline 'it completes on its due date (or now, when that has passed)'"""
    mc_days: NDArray[np.float64]
    """the service's Monte-Carlo p50 (days) at the probe (nan where not computed)"""

    def __len__(self) -> int:
        return len(self.y)

    def days(self) -> NDArray[np.float64]:
        return np.expm1(self.y)

    def inputs(self) -> list[F32]:
        return list(pad_milestones(self.rows))

    def subset(self, mask: NDArray[np.bool_]) -> MilestoneSamples:
        ix = np.flatnonzero(mask)
        return MilestoneSamples(tuple(self.rows[i] for i in ix), self.y[ix], tuple(self.at[i] for i in ix),
                                tuple(self.keys[i] for i in ix), self.due_days[ix], self.mc_days[ix])


MonteCarlo = Callable[[TimelineStore, str, str, datetime], Mapping[str, float]]
"""(state, tenant, project id, now) -> {milestone id: Monte-Carlo p50 days} (the served forecast)."""


def milestone_truth(truth: Any) -> dict[MKey, tuple[str, datetime]]:
    """(project id, completed_at) of every simulated milestone that completed within the horizon."""
    return {(p.tenant_id, m.milestone_id): (p.project_id, m.completed_at)
            for p in truth.projects for m in p.milestones if m.completed_at is not None}


def build_milestone_dataset(events: Iterable[Envelope], completed: Mapping[MKey, tuple[str, datetime]],
                            every: timedelta = timedelta(days=1), monte_carlo: MonteCarlo | None = None,
                            monte_carlo_from: datetime | None = None) -> MilestoneSamples:
    """Replay ``events`` (time-ordered); at each probe time (every ``every`` from the first event's day),
    before applying any later event, a sample per milestone that is open in the state, has open tasks and
    completed (truth) after the probe. ``monte_carlo`` (from ``monte_carlo_from`` on) records the served
    Monte-Carlo p50 at the same probe for comparison."""
    store = InMemoryTimelineStore()
    out: dict[str, list[Any]] = {k: [] for k in ("rows", "y", "at", "keys", "due", "mc")}
    next_probe: datetime | None = None
    for env in events:
        at = occurred_at(env)
        if next_probe is None:
            next_probe = at.replace(hour=0, minute=0, second=0, microsecond=0) + every
        while at >= next_probe:
            _probe(store, completed, next_probe, out, monte_carlo
                   if monte_carlo_from is None or next_probe >= monte_carlo_from else None)
            next_probe += every
        apply_event(store, env)
    return MilestoneSamples(tuple(out["rows"]), np.asarray(out["y"], np.float64), tuple(out["at"]),
                            tuple(out["keys"]), np.asarray(out["due"], np.float64), np.asarray(out["mc"], np.float64))


def _probe(store: InMemoryTimelineStore, completed: Mapping[MKey, tuple[str, datetime]], now: datetime,
           out: dict[str, list[Any]], monte_carlo: MonteCarlo | None) -> None:
    mc_cache: dict[tuple[str, str], Mapping[str, float]] = {}
    for (tenant, milestone_id), (project_id, done) in completed.items():
        project = store.project(tenant, project_id)
        if done <= now or project is None:
            continue
        milestone = next((m for m in project.milestones if m.milestone_id == milestone_id), None)
        if milestone is None or milestone.completed:
            continue
        tasks = milestone_tasks(store, tenant, project.task_ids, milestone_id)
        if not tasks:
            continue
        mc = float("nan")
        if monte_carlo is not None:
            if (tenant, project_id) not in mc_cache:
                mc_cache[(tenant, project_id)] = monte_carlo(store, tenant, project_id, now)
            mc = float(mc_cache[(tenant, project_id)].get(milestone_id, float("nan")))
        out["rows"].append(milestone_inputs(store, tenant, tasks, milestone, now))
        out["y"].append(math.log1p((done - now).total_seconds() / 86400.0))
        out["at"].append(now)
        out["keys"].append((tenant, milestone_id))
        due = float("nan") if milestone.due_at is None else (milestone.due_at - now).total_seconds() / 86400.0
        out["due"].append(max(due, 0.0) if due == due else due)
        out["mc"].append(mc)


@dataclass(frozen=True)
class MilestoneSplit:
    train: MilestoneSamples
    val: MilestoneSamples
    test: MilestoneSamples
    val_start: datetime
    test_start: datetime


def split_milestones(samples: MilestoneSamples, val_start: datetime, test_start: datetime) -> MilestoneSplit:
    """Time-ordered, at the task model's boundaries: train | validation weeks | held-out weeks."""
    at = np.asarray([a.timestamp() for a in samples.at])
    v, t = val_start.timestamp(), test_start.timestamp()
    return MilestoneSplit(samples.subset(at < v), samples.subset((at >= v) & (at < t)), samples.subset(at >= t),
                          val_start, test_start)


def mae_days(predicted: NDArray[np.float64], truth: NDArray[np.float64]) -> float:
    """Mean absolute error in days over the samples where ``predicted`` is known (nan when none)."""
    ok = np.isfinite(predicted)
    return float(np.mean(np.abs(predicted[ok] - truth[ok]))) if ok.any() else float("nan")


# ---- serving ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MilestoneMeta:
    use_for_p50: bool
    """the milestone p50 is the model's (it beat Monte-Carlo on validation) or stays Monte-Carlo's"""


def milestone_metadata(use_for_p50: bool, val: Mapping[str, float]) -> dict[str, str]:
    return {**MILESTONE_FEATURES.metadata(), "max_tasks": str(MAX_TASKS), "use_for_p50": json.dumps(use_for_p50),
            "validation_mae_days": json.dumps(dict(val))}


@lru_cache(maxsize=16)
def milestone_meta_of(model: OnnxModel) -> MilestoneMeta:
    """What the file says besides the graph; checks the feature layout (once per loaded model)."""
    check_feature_schema(model.metadata, MILESTONE_FEATURES, model.path)
    return MilestoneMeta(bool(json.loads(model.metadata.get("use_for_p50", "false"))))


def run_milestone(version: VersionedModel, rows: Sequence[F32]) -> NDArray[np.float64]:
    """Days until each milestone completes (the deterministic graph, one call for all)."""
    tasks, mask = pad_milestones(rows)
    out = version.model.run({"tasks": tasks, "task_mask": mask})[MILESTONE_OUTPUT]
    return np.maximum(np.expm1(np.asarray(out, dtype=np.float64)), 0.0)
