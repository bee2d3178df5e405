"""The serving core: read the features of a task and its candidates, score them with the loaded ONNX
ranker, explain the top k, and build the prediction with its provenance. No torch, no transport."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sunday.ml.v1 import assignment_pb2, common_pb2, events_pb2

from mesh.errors import InvalidArgument, MeshError, NotFound
from mesh.events import task_type_slot
from mesh.models import (
    INPUT_NAME,
    FeatureSchema,
    ModelSource,
    OnnxModel,
    VersionedModel,
    build_provenance,
    check_feature_schema,
)
from services.assignment.candidates import DEFAULT_SHORTLIST, CandidatePool, shortlist
from services.assignment.features import (
    FEATURE_NAMES,
    FEATURE_SCHEMA,
    REASON_GROUPS,
    Matrix,
    PeopleArrays,
    PersonFeatures,
    TaskFeatures,
    column,
    describe_reason,
    feature_matrix,
)
from services.assignment.online import OnlineFeatures, candidate_rows
from services.assignment.state import StateStore

if TYPE_CHECKING:
    from mesh.mlops import DriftMonitor

log = logging.getLogger(__name__)

DEFAULT_K = 5
MAX_K = 100
MODEL_NAME = "assignment-ensemble"
"""The registered model the service serves (its ``champion`` alias)."""
SCHEMA = FeatureSchema(FEATURE_SCHEMA, FEATURE_NAMES)
"""The feature layout the served model must record (checked when it is loaded)."""
_GROUP_COLUMNS = {g: [column(n) for n in names] for g, names in REASON_GROUPS.items()}


@lru_cache(maxsize=16)
def reference_of(model: OnnxModel) -> Matrix:
    """The model's reference row (training means) from its ONNX metadata; checks the feature layout
    (once per loaded model: the cache holds it by identity)."""
    check_feature_schema(model.metadata, SCHEMA, model.path)
    return np.asarray(json.loads(model.metadata["reference"]), dtype=np.float32)


@dataclass(frozen=True)
class RankRequest:
    """One ranking: a task (its id, or its row) of a tenant, among ``candidate_ids`` (the tenant's active
    people when empty), top ``k`` (0: :data:`DEFAULT_K`)."""

    tenant_id: str
    task: TaskFeatures | str
    candidate_ids: tuple[str, ...] = ()
    k: int = 0
    trace_id: str | None = None


Ranked = events_pb2.AssignmentPrediction | MeshError
"""A prediction, or the domain error of that one request (NotFound, InvalidArgument)."""


@dataclass
class _Job:
    """A request on its way through a batch: its task row, then its candidates (rows in the batch's
    people), then its scores."""

    at: int
    request: RankRequest
    task: TaskFeatures | None = None
    keys: list[tuple[str, str]] = field(default_factory=list)
    rows: npt.NDArray[np.intp] | None = None


class AssignmentRanker:
    """Ranks the candidate assignees of tasks: :meth:`rank_assignees` for one, :meth:`rank_many` for many
    tasks of a tenant, :meth:`rank_batch` for any mix of requests (what the gRPC micro-batcher sends).

    Two stages: when a task has more than ``shortlist`` candidates, the first stage
    (:mod:`services.assignment.candidates`) keeps the best ``shortlist`` of them by a cheap score over the
    cached pool of the tenant's people; their rows are then read fresh from the online store (one read for
    the union of every request's shortlist) and scored by the model (one ONNX run for all rows of all
    requests); reasons are computed for each request's top k only (one more run)."""

    def __init__(self, state: StateStore, online: OnlineFeatures, model: ModelSource, *,
                 max_reasons: int = 3, shortlist: int = DEFAULT_SHORTLIST, pool: CandidatePool | None = None,
                 drift: DriftMonitor | None = None) -> None:
        """``drift``: fed every scored row (per tenant) to measure input and score drift (``mesh.mlops``)."""
        self._state = state
        self._online = online
        self._model = model
        self._max_reasons = max_reasons
        self._shortlist = shortlist
        self._pool = pool or CandidatePool(online)
        self._drift = drift

    def task(self, tenant_id: str, task_id: str) -> TaskFeatures:
        features = self._online.task(tenant_id, task_id)
        if features is None:
            raise NotFound(_unknown_task(tenant_id, task_id))
        return features

    def candidates(self, tenant_id: str, candidate_ids: Sequence[str]) -> list[PersonFeatures]:
        people = candidate_rows(self._state, self._online, tenant_id, candidate_ids)
        if not people:
            raise NotFound(_no_candidates(tenant_id, candidate_ids))
        return people

    def rank_assignees(self, tenant_id: str, task: TaskFeatures | str, candidate_ids: Sequence[str] = (),
                       k: int = 0, trace_id: str | None = None) -> events_pb2.AssignmentPrediction:
        """Top ``k`` (default 5) candidates with scores and reasons; NotFound for an unknown tenant, task
        or candidate set."""
        (outcome,) = self.rank_batch([RankRequest(tenant_id, task, tuple(candidate_ids), k, trace_id)])
        if isinstance(outcome, MeshError):
            raise outcome
        return outcome

    def rank_many(self, tenant_id: str, task_ids: Sequence[str], k: int = 0,
                  trace_id: str | None = None, state: StateStore | None = None) -> list[Ranked]:
        """Rank many tasks of one tenant at once (a batch handler's new tasks): one read of the task rows,
        one read of the union of their shortlisted people, one model run over all rows.

        Returns one outcome per task id, in order: its prediction, or the ``NotFound`` of a task (or a
        tenant without people) the service does not know, as a value, so one unknown task does not fail
        the others. Raises ``Unavailable`` when no model is loaded (nothing can be ranked). ``state``: where
        the task and people rows are read (default: the service's state; the batch handler passes the state
        as of the tasks' creation, see :mod:`services.assignment.asof`)."""
        return self.rank_batch([RankRequest(tenant_id, t, (), k, trace_id) for t in task_ids], state)

    def rank_batch(self, requests: Sequence[RankRequest], state: StateStore | None = None) -> list[Ranked]:
        """Any mix of requests (tenants, candidate lists, k) in one pass; one outcome per request, in
        order (see :meth:`rank_many`)."""
        rows = state or self._state
        online = self._online if state is None else OnlineFeatures(state)
        outcomes: list[Ranked | None] = [None] * len(requests)
        jobs = []
        for at, request in enumerate(requests):
            try:
                _validate(request)
                jobs.append(_Job(at, request))
            except MeshError as error:
                outcomes[at] = error
        if jobs:
            version = self._model.current  # Unavailable (no model) fails the batch: nothing can be ranked
            self._read_tasks(rows, jobs, outcomes)
            jobs = [j for j in jobs if outcomes[j.at] is None]
            self._choose_candidates(rows, jobs)
            people = self._read_people(online, jobs, outcomes)
            jobs = [j for j in jobs if outcomes[j.at] is None]
            for job, prediction in zip(jobs, self._score(version, jobs, people), strict=True):
                outcomes[job.at] = prediction
        return [o if o is not None else NotFound("not ranked") for o in outcomes]

    def _read_tasks(self, state: StateStore, jobs: list[_Job], outcomes: list[Ranked | None]) -> None:
        """The task rows asked for by id: one read per tenant."""
        by_tenant: dict[str, list[_Job]] = {}
        for job in jobs:
            if isinstance(job.request.task, TaskFeatures):
                job.task = job.request.task
            else:
                by_tenant.setdefault(job.request.tenant_id, []).append(job)
        for tenant, mine in by_tenant.items():
            for job, row in zip(mine, state.tasks(tenant, [str(j.request.task) for j in mine]), strict=True):
                job.task = row
                if row is None:
                    outcomes[job.at] = NotFound(_unknown_task(tenant, str(job.request.task)))

    def _choose_candidates(self, state: StateStore, jobs: list[_Job]) -> None:
        """Each job's candidate keys: its own list or the tenant's active people, cut to the shortlist by
        the first stage when longer."""
        active: dict[str, list[str]] = {}
        for job in jobs:
            tenant = job.request.tenant_id
            if not job.request.candidate_ids and tenant not in active:
                active[tenant] = state.active_ids(tenant)
            ids = list(job.request.candidate_ids) or active[tenant]
            if len(ids) > self._shortlist and job.task is not None:
                ids = self._first_stage(state, tenant, job.task, ids, active)
            job.keys = [(tenant, u) for u in ids]

    def _first_stage(self, state: StateStore, tenant: str, task: TaskFeatures, ids: list[str],
                     active: dict[str, list[str]]) -> list[str]:
        if tenant not in active:
            active[tenant] = state.active_ids(tenant)
        pool, index = self._pool.arrays(tenant, active[tenant])
        in_pool = np.asarray([index[u] for u in ids if u in index], dtype=np.intp)
        outside = [u for u in ids if u not in index]  # asked for by name, not active: never cut
        best = shortlist(task, pool, self._shortlist, in_pool)
        return [pool.people[i].user_id for i in best] + outside

    def _read_people(self, online: OnlineFeatures, jobs: list[_Job], outcomes: list[Ranked | None]) -> PeopleArrays:
        """One read per tenant of the union of its jobs' candidates; each job's rows in the batch's people
        (NotFound when none of its candidates exists)."""
        wanted: dict[str, dict[str, None]] = {}
        for job in jobs:
            wanted.setdefault(job.request.tenant_id, {}).update(dict.fromkeys(u for _, u in job.keys))
        found = [(tenant, p) for tenant, ids in wanted.items() for p in online.people(tenant, list(ids))]
        order = {(tenant, p.user_id): i for i, (tenant, p) in enumerate(found)}
        for job in jobs:
            rows = [order[key] for key in job.keys if key in order]
            if rows:
                job.rows = np.asarray(rows, dtype=np.intp)
            else:
                outcomes[job.at] = NotFound(_no_candidates(job.request.tenant_id, job.request.candidate_ids))
        return PeopleArrays.of([p for _, p in found])

    def _score(self, version: VersionedModel, jobs: list[_Job],
               people: PeopleArrays) -> list[events_pb2.AssignmentPrediction]:
        if not jobs:
            return []
        xs = [feature_matrix(_task(j), people, j.rows) for j in jobs]
        bounds = np.cumsum([0, *(len(x) for x in xs)])
        scores = self._run(version, np.concatenate(xs))
        if self._drift is not None:
            self._observe(self._drift, version, jobs, xs, scores)
        reference = reference_of(version.model)
        tops = [_top_k(scores[a:b], min(j.request.k or DEFAULT_K, b - a))
                for j, a, b in zip(jobs, bounds[:-1], bounds[1:], strict=True)]
        # one more run: each top candidate of each job with one reason group set to the reference
        occluded = [_occlude(x[i], cols, reference) for x, top in zip(xs, tops, strict=True) for i in top
                    for cols in _GROUP_COLUMNS.values()]
        drops = self._run(version, np.stack(occluded)).reshape(-1, len(_GROUP_COLUMNS))
        out, d = [], 0
        for job, a, top in zip(jobs, bounds[:-1], tops, strict=True):
            job_scores = scores[a:a + len(_rows(job))]
            reasons = {i: self._reasons(job_scores[i], drops[d + r]) for r, i in enumerate(top)}
            d += len(top)
            out.append(self._prediction(version, _task(job), [people.people[i] for i in _rows(job)], job_scores,
                                        reasons, job.request.trace_id))
        return out

    @staticmethod
    def _observe(drift: DriftMonitor, version: VersionedModel, jobs: list[_Job], xs: list[Matrix],
                 scores: np.ndarray) -> None:
        by_tenant: dict[str, list[int]] = {}
        for at, job in enumerate(jobs):
            by_tenant.setdefault(job.request.tenant_id, []).append(at)
        bounds = np.cumsum([0, *(len(x) for x in xs)])
        for tenant, ats in by_tenant.items():
            try:
                drift.observe(version.name, version.version, tenant, np.concatenate([xs[a] for a in ats]),
                              np.concatenate([scores[bounds[a]:bounds[a + 1]] for a in ats]))
            except Exception:  # monitoring never fails a prediction
                log.exception("drift monitoring failed for tenant %s", tenant)

    def _reasons(self, score: float, drops: np.ndarray) -> list[tuple[str, float]]:
        contributions = ((g, float(score - d)) for g, d in zip(_GROUP_COLUMNS, drops, strict=True))
        return sorted(contributions, key=lambda gc: -gc[1])[: self._max_reasons]

    @staticmethod
    def _run(version: VersionedModel, x: Matrix) -> np.ndarray:
        return np.asarray(version.model.run({INPUT_NAME: x})["score"], np.float64).reshape(-1)

    def _prediction(self, version: VersionedModel, task: TaskFeatures, people: Sequence[PersonFeatures],
                    scores: np.ndarray, reasons: dict[int, list[tuple[str, float]]],
                    trace_id: str | None) -> events_pb2.AssignmentPrediction:
        order = sorted(reasons, key=lambda i: -scores[i])
        candidates = [events_pb2.RankedCandidate(
            user_id=people[i].user_id, score=float(scores[i]),
            reasons=[common_pb2.Reason(feature=g, contribution=c, description=describe_reason(g, task, people[i]))
                     for g, c in reasons[i]]) for i in order]
        # as_of of a row read from the online store is that row's event timestamp there
        stamps = {"person_features": max(p.as_of for p in people), "task_features": task.as_of}
        provenance = build_provenance(version.name, version.version, trace_id or None, stamps, datetime.now(UTC))
        return events_pb2.AssignmentPrediction(task_id=task.task_id, project_id=task.project_id,
                                               candidates=candidates, provenance=provenance)


def _validate(request: RankRequest) -> None:
    if not request.tenant_id:
        raise InvalidArgument("tenant_id is required")
    if request.k < 0 or request.k > MAX_K:
        raise InvalidArgument(f"k must be within 0..{MAX_K}")


def _task(job: _Job) -> TaskFeatures:
    assert job.task is not None  # jobs without a task row were answered NotFound before scoring
    return job.task


def _rows(job: _Job) -> npt.NDArray[np.intp]:
    assert job.rows is not None  # jobs without candidates were answered NotFound before scoring
    return job.rows


def _unknown_task(tenant_id: str, task_id: str) -> str:
    return f"task {task_id!r} of tenant {tenant_id!r} is not known to the assignment service"


def _no_candidates(tenant_id: str, candidate_ids: Sequence[str]) -> str:
    what = f"none of the candidates {list(candidate_ids)[:5]}" if candidate_ids else "no active people"
    return f"tenant {tenant_id!r}: {what} known to the assignment service"


def _top_k(scores: np.ndarray, k: int) -> list[int]:
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def _occlude(row: Matrix, cols: list[int], reference: Matrix) -> Matrix:
    out = row.copy()
    out[cols] = reference[cols]
    return out


def task_from_payload(p: assignment_pb2.TaskPayload) -> TaskFeatures:
    """A gRPC ``TaskPayload`` -> the task row (as of now: it has not been through the event stream)."""
    if not p.task_id:
        raise InvalidArgument("payload.task_id is required")
    return TaskFeatures(task_id=p.task_id, project_id=p.project_id, task_type=task_type_slot(p.task_type),
                        priority=int(p.priority), required_skills=tuple(p.required_skills),
                        estimate_hours=float(p.estimate_hours), text=f"{p.title} {p.description}",
                        as_of=datetime.now(UTC))
