"""The training set: events replayed in time order through the service's own state (`apply_event`); one
sample per open task at each of its events (created, assigned, status change), with the features as of
that event (point in time) and the target log(hours until the task is done).

Labels: the time each task was done. From the event stream (`labels_from_events`: tasks whose `done`
status change was seen) or, for the simulated world, from its ground truth (`labels_from_truth`, which
also knows tasks done after the last emitted event, so held-out weeks at the end are not biased towards
short tasks).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mesh.events import Envelope, occurred_at, status_name
from mesh.models import time_split
from services.timeline.effort_slot import ConstantPrior, EffortPrior
from services.timeline.features import N_STATIC, TaskInputs, sequence, static_vector
from services.timeline.state import InMemoryTimelineStore, apply_event
from services.timeline.tensors import F32, pad_sequences

Key = tuple[str, str]
"""(tenant id, task or project id)"""
MIN_HOURS = 0.1
"""Floor of the target (a task done within minutes of an event)."""
SNAPSHOT_EVENTS = frozenset({"task_created", "task_assigned", "task_status_changed"})


@dataclass(frozen=True)
class Samples:
    """Per-sample arrays; ``y`` is log(hours remaining)."""

    seqs: tuple[F32, ...]
    static: F32
    y: NDArray[np.float64]
    at: tuple[datetime, ...]
    keys: tuple[Key, ...]
    task_types: tuple[str, ...]
    assignees: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, idx: Sequence[int] | NDArray[Any]) -> Samples:
        ix = [int(i) for i in idx]
        return Samples(tuple(self.seqs[i] for i in ix), self.static[ix] if ix else np.zeros((0, N_STATIC), np.float32),
                       self.y[ix], tuple(self.at[i] for i in ix), tuple(self.keys[i] for i in ix),
                       tuple(self.task_types[i] for i in ix), tuple(self.assignees[i] for i in ix))

    def inputs(self) -> TaskInputs:
        events, mask = pad_sequences(list(self.seqs))
        return TaskInputs(events, mask, self.static)

    def hours(self) -> NDArray[np.float64]:
        return np.exp(self.y)

    def time_range(self) -> tuple[datetime, datetime]:
        return min(self.at), max(self.at)


@dataclass(frozen=True)
class ProjectProbe:
    """The state of the world when a project was ``fraction`` of the way from its start to its completion."""

    tenant_id: str
    project_id: str
    fraction: float
    at: datetime
    completed_at: datetime
    deadline: datetime | None
    store: InMemoryTimelineStore


@dataclass(frozen=True)
class Dataset:
    samples: Samples
    probes: tuple[ProjectProbe, ...]


def labels_from_events(events: Iterable[Envelope]) -> dict[Key, datetime]:
    out: dict[Key, datetime] = {}
    for env in events:
        if env.type == "task_status_changed" and status_name(env.task_status_changed.to_status) == "done":
            out[(env.tenant_id, env.task_status_changed.task_id)] = occurred_at(env)
    return out


def labels_from_truth(truth: Any) -> dict[Key, datetime]:
    """Done times of every task in a ``simulator`` truth (``truth.tasks``)."""
    return {(t.tenant_id, t.task_id): t.done_at for t in truth.tasks}


def project_completions(truth: Any) -> dict[Key, tuple[datetime, datetime]]:
    """(start, completed_at) of every simulated project that completed."""
    return {(p.tenant_id, p.project_id): (p.start, p.completed_at) for p in truth.projects if p.completed_at}


def _probe_times(completions: Mapping[Key, tuple[datetime, datetime]],
                 fractions: Sequence[float]) -> list[tuple[datetime, Key, float, datetime]]:
    out = [(start + f * (done - start), key, f, done) for key, (start, done) in completions.items() for f in fractions]
    return sorted(out, key=lambda x: x[0])


def build_dataset(events: Iterable[Envelope], done_at: Mapping[Key, datetime],
                  completions: Mapping[Key, tuple[datetime, datetime]] | None = None,
                  fractions: Sequence[float] = (0.25, 0.5, 0.75), effort: EffortPrior | None = None,
                  with_samples: bool = True) -> Dataset:
    """Replay ``events`` (time-ordered); a sample per open task at each snapshot event whose done time is
    known (none when ``with_samples`` is false: probes only); and a copy of the state at each (project,
    fraction) probe of ``completions``. ``effort`` gives the effort-prior feature (default: constant)."""
    prior = effort or ConstantPrior()
    store = InMemoryTimelineStore()
    rows: dict[str, list[Any]] = {k: [] for k in ("seqs", "static", "y", "at", "keys", "types", "assignees")}
    probes: list[ProjectProbe] = []
    pending = _probe_times(completions or {}, fractions)
    for env in events:
        at = occurred_at(env)
        while pending and pending[0][0] <= at:
            t, (tenant, project_id), f, done = pending.pop(0)
            p = store.project(tenant, project_id)
            probes.append(ProjectProbe(tenant, project_id, f, t, done, p.deadline if p else None, store.snapshot()))
        touched = apply_event(store, env)
        if not with_samples or env.type not in SNAPSHOT_EVENTS or touched is None:
            continue
        task_id = getattr(env, env.type).task_id
        task = store.task(env.tenant_id, task_id)
        done_time = done_at.get((env.tenant_id, task_id))
        if task is None or not task.is_open or done_time is None:
            continue
        person = store.person(env.tenant_id, task.assignee_id) if task.assignee_id else None
        deps = sum(d.is_open for d in store.tasks(env.tenant_id, list(task.depends_on)))
        rows["seqs"].append(sequence(task, at))
        rows["static"].append(static_vector(task, person, store.project(env.tenant_id, task.project_id), deps, at,
                                            float(prior.points([task.text])[0])))
        rows["y"].append(np.log(max((done_time - at).total_seconds() / 3600.0, MIN_HOURS)))
        rows["at"].append(at)
        rows["keys"].append((env.tenant_id, task_id))
        rows["types"].append(task.task_type)
        rows["assignees"].append(f"{env.tenant_id}:{task.assignee_id}")
    static = np.stack(rows["static"]) if rows["static"] else np.zeros((0, N_STATIC), np.float32)
    samples = Samples(tuple(rows["seqs"]), static, np.asarray(rows["y"], np.float64), tuple(rows["at"]),
                      tuple(rows["keys"]), tuple(rows["types"]), tuple(rows["assignees"]))
    return Dataset(samples, tuple(probes))


@dataclass(frozen=True)
class Split:
    train: Samples
    val: Samples
    test: Samples
    val_start: datetime
    test_start: datetime


def split_by_week(samples: Samples, val_weeks: int = 2, test_weeks: int = 2) -> Split:
    """Time-ordered (`mesh.models.time_split`): the last ``test_weeks`` weeks are the test set, the
    ``val_weeks`` before them validate."""
    parts = time_split(samples.at, timedelta(weeks=val_weeks), timedelta(weeks=test_weeks))
    return Split(samples.subset(parts.train), samples.subset(parts.val), samples.subset(parts.test),
                 parts.val_start, parts.test_start)


def projects_from_events(events: Sequence[Envelope], settle: timedelta = timedelta(weeks=2)
                         ) -> dict[Key, tuple[datetime, datetime]]:
    """(start, completed_at) of each project the events show complete: every task it got is done, the
    last one at least ``settle`` before the log ends with no task created since (the event log has no
    "project completed" event: a project quiet that long is taken as finished)."""
    created: dict[Key, datetime] = {}
    tasks: dict[Key, set[str]] = {}
    last_created: dict[Key, datetime] = {}
    done: dict[tuple[str, str], datetime] = labels_from_events(events)
    for env in events:
        if env.type == "project_created":
            created[(env.tenant_id, env.project_created.project_id)] = occurred_at(env)
        elif env.type == "task_created":
            key = (env.tenant_id, env.task_created.project_id)
            tasks.setdefault(key, set()).add(env.task_created.task_id)
            last_created[key] = occurred_at(env)
    end = max((occurred_at(e) for e in events), default=None)
    out: dict[Key, tuple[datetime, datetime]] = {}
    for key, start in created.items():
        ids = tasks.get(key, set())
        if end is None or not ids or any((key[0], t) not in done for t in ids):
            continue
        finished = max(done[(key[0], t)] for t in ids)
        if finished >= last_created[key] and finished <= end - settle:
            out[key] = (start, finished)
    return out


def milestones_from_events(events: Iterable[Envelope]) -> dict[tuple[str, str], tuple[str, datetime]]:
    """(tenant, milestone id) -> (project id, completed_at) of every milestone completed in ``events``."""
    return {(env.tenant_id, env.milestone_completed.milestone_id): (env.milestone_completed.project_id,
                                                                    occurred_at(env))
            for env in events if env.type == "milestone_completed"}
