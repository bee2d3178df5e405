"""The serving core: read a task's (or a project's open tasks') features, run the Monte-Carlo-dropout ONNX
graph (N stochastic passes as one batched call), calibrate the quantiles (conformal, parameters stored in
the model file), and for projects and milestones simulate completion over the open tasks. No torch, no
transport."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from sunday.ml.v1 import common_pb2, events_pb2

from mesh.errors import InvalidArgument, NotFound, Unavailable
from mesh.models import FeatureSchema, ModelSource, OnnxModel, VersionedModel, build_provenance, check_feature_schema
from services.timeline.calibration import ConformalCalibrator
from services.timeline.effort_slot import ConstantPrior, EffortPrior
from services.timeline.features import FEATURE_SCHEMA, STATIC_NAMES, TaskInputs, task_inputs
from services.timeline.milestone import milestone_inputs, milestone_meta_of, ordered, run_milestone
from services.timeline.montecarlo import RemainingTask
from services.timeline.projection import DEFAULT, ProjectParams, ScopeSnapshot, forecast_targets, scope_snapshot
from services.timeline.state import MilestoneState, ProjectState, TaskState, TimelineStore
from services.timeline.tensors import TASK_OUTPUT, quantiles_from_passes, repeat_for_mc

if TYPE_CHECKING:
    from mesh.mlops import DriftMonitor

log = logging.getLogger(__name__)
MODEL_NAME = "timeline-task-duration"
"""The registered model the service serves (its ``champion`` alias): the MC-dropout graph."""
SCHEMA = FeatureSchema(FEATURE_SCHEMA, STATIC_NAMES)
"""The feature layout the served model must record (checked when it is loaded)."""
DEFAULT_SIMULATIONS = 2000
MAX_SIMULATIONS = 100_000
EK = events_pb2.EntityKind


@dataclass(frozen=True)
class ModelMeta:
    """What the exported file carries besides the graph: the calibration, the number of passes, the
    project-forecast parameters fitted with it and the effort prior its features were built with."""

    calibrator: ConformalCalibrator
    passes: int
    project: ProjectParams = DEFAULT
    effort_prior: str = "constant"


@lru_cache(maxsize=16)
def meta_of(model: OnnxModel) -> ModelMeta:
    """Calibration and passes from the ONNX metadata; checks the feature layout (once per loaded model:
    the cache holds it by identity)."""
    check_feature_schema(model.metadata, SCHEMA, model.path)
    props = model.metadata
    cal = json.loads(props["calibration"])
    project = ProjectParams.from_json(props["project_params"]) if "project_params" in props else DEFAULT
    return ModelMeta(ConformalCalibrator(cal["method"], float(cal["q"]), float(cal["coverage"])),
                     int(props["mc_passes"]), project, props.get("effort_prior", "constant"))


@dataclass(frozen=True)
class HoursQuantiles:
    """Calibrated p10/p50/p90 of remaining wall-clock hours, one value per task."""

    p10: np.ndarray
    p50: np.ndarray
    p90: np.ndarray


def run_mc(version: VersionedModel, inputs: TaskInputs, passes: int | None = None) -> HoursQuantiles:
    """N stochastic passes in one call, quantiles per task, conformal calibration, back to hours."""
    meta = meta_of(version.model)
    n = passes or meta.passes
    feeds = dict(zip(("events", "event_mask", "static"),
                     repeat_for_mc([inputs.events, inputs.event_mask, inputs.static], n), strict=True))
    q = quantiles_from_passes(version.model.run(feeds)[TASK_OUTPUT], n)
    lo, hi = meta.calibrator.apply(q.p10, q.p50, q.p90)
    return HoursQuantiles(np.exp(lo), np.exp(q.p50), np.exp(hi))


@dataclass(frozen=True)
class ProjectForecast:
    project: events_pb2.TimelinePrediction
    milestones: tuple[events_pb2.TimelinePrediction, ...]


@dataclass(frozen=True)
class Forecasts:
    """What `TimelinePredictor.forecast_batch` computed for one tenant, by id."""

    tasks: dict[str, events_pb2.TimelinePrediction]
    projects: dict[str, ProjectForecast]


MAX_DRAWS = 1_000_000
"""Most task-duration draws (simulations x open tasks) of one project forecast: a project with more open
tasks gets fewer simulations (never below `MIN_SIMULATIONS`), so one event's work is bounded."""
MIN_SIMULATIONS = 200


def simulations_for(requested: int, open_tasks: int) -> int:
    """``requested`` simulations, capped so that simulations x open tasks stays within `MAX_DRAWS`."""
    return min(requested, max(MIN_SIMULATIONS, MAX_DRAWS // max(open_tasks, 1)))


@dataclass(frozen=True)
class _Case:
    """One project's Monte-Carlo inputs as of ``at``."""

    project: ProjectState
    tasks: list[TaskState]
    remaining: list[RemainingTask]
    scope: ScopeSnapshot
    at: datetime


Quantiles = dict[str, tuple[float, float, float]]
"""Calibrated (p10, p50, p90) remaining hours by task id."""


class TimelinePredictor:
    """Task and project forecasts from the state store and the loaded model."""

    def __init__(self, store: TimelineStore, model: ModelSource, *, simulations: int = DEFAULT_SIMULATIONS,
                 seed: int = 0, effort: EffortPrior | None = None, project_params: ProjectParams | None = None,
                 milestone_model: ModelSource | None = None, drift: DriftMonitor | None = None) -> None:
        """``effort``: the prior the served model was trained with (constant when None or when the model
        was trained without one); ``project_params`` overrides the model's fitted ones (evaluation);
        ``milestone_model``: the milestone model (None or not loaded: Monte-Carlo milestone forecasts);
        ``drift``: fed the static features and p50 of every task run (``mesh.mlops``)."""
        self._milestone = milestone_model
        self._drift = drift
        self._store = store
        self._model = model
        self._simulations = simulations
        self._seed = seed
        self._effort = effort
        self._project_params = project_params
        self._warned: set[str] = set()

    def _prior(self, version: VersionedModel) -> EffortPrior:
        wanted = meta_of(version.model).effort_prior
        if wanted == "constant":
            return ConstantPrior()
        if (self._effort is None or self._effort.name != wanted) and wanted not in self._warned:
            self._warned.add(wanted)
            log.warning("model %s v%s was trained with effort prior %s, serving with %s", version.name,
                        version.version, wanted, "a constant" if self._effort is None else self._effort.name)
        return self._effort or ConstantPrior()

    def project_params(self, version: VersionedModel) -> ProjectParams:
        return self._project_params or meta_of(version.model).project

    @property
    def store(self) -> TimelineStore:
        return self._store

    def now_for(self, *stamps: datetime) -> datetime:
        """Wall-clock now, or the newest state time when that is later (a replayed or simulated world)."""
        return max((datetime.now(UTC), *stamps))

    def task(self, tenant_id: str, task_id: str) -> TaskState:
        if not tenant_id or not task_id:
            raise InvalidArgument("tenant_id and task_id are required")
        task = self._store.task(tenant_id, task_id)
        if task is None:
            raise NotFound(f"task {task_id!r} of tenant {tenant_id!r} is not known to the timeline service")
        return task

    def forecast(self, tenant_id: str, tasks: Sequence[TaskState], now: datetime) -> HoursQuantiles:
        """Remaining hours of ``tasks`` (done ones get 0)."""
        q = self._quantiles(self._model.current, tenant_id, tasks, now)
        rows = np.asarray([q.get(t.task_id, (0.0, 0.0, 0.0)) for t in tasks], dtype=np.float64).reshape(-1, 3)
        return HoursQuantiles(rows[:, 0], rows[:, 1], rows[:, 2])

    def _quantiles(self, version: VersionedModel, tenant_id: str, tasks: Sequence[TaskState],
                   now: datetime) -> Quantiles:
        """The open ones among ``tasks`` (each once) through the model in ONE run."""
        todo = list({t.task_id: t for t in tasks if t.is_open}.values())
        if not todo:
            return {}
        inputs = task_inputs(self._store, tenant_id, todo, now, self._prior(version))
        q = run_mc(version, inputs)
        if self._drift is not None:
            try:
                self._drift.observe(version.name, version.version, tenant_id, inputs.static, q.p50)
            except Exception:  # monitoring never fails a forecast
                log.exception("drift monitoring failed for tenant %s", tenant_id)
        return {t.task_id: (float(q.p10[i]), float(q.p50[i]), float(q.p90[i])) for i, t in enumerate(todo)}

    def predict_task(self, tenant_id: str, task_id: str, now: datetime | None = None,
                     trace_id: str | None = None) -> events_pb2.TimelinePrediction:
        task = self.task(tenant_id, task_id)
        at = now or self.now_for(task.timestamp())
        return self.forecast_batch(tenant_id, [task_id], [], at, trace_id).tasks[task_id]

    def project(self, tenant_id: str, project_id: str) -> ProjectState:
        if not tenant_id or not project_id:
            raise InvalidArgument("tenant_id and project_id are required")
        project = self._store.project(tenant_id, project_id)
        if project is None:
            raise NotFound(f"project {project_id!r} of tenant {tenant_id!r} is not known to the timeline service")
        return project

    def project_case(self, tenant_id: str, project_id: str, now: datetime | None = None
                     ) -> tuple[ProjectState, list[TaskState], list[RemainingTask], ScopeSnapshot, datetime]:
        """The project, its open tasks, their forecasts as Monte-Carlo inputs, its scope so far, and now."""
        project = self.project(tenant_id, project_id)
        known = self._store.tasks(tenant_id, list(project.task_ids))
        at = now or self.now_for(project.timestamp(), *(t.timestamp() for t in known if t.is_open))
        c = _case(project, known, self._quantiles(self._model.current, tenant_id, known, at), at)
        return c.project, c.tasks, c.remaining, c.scope, c.at

    def predict_project(self, tenant_id: str, project_id: str, now: datetime | None = None,
                        simulations: int = 0, trace_id: str | None = None) -> ProjectForecast:
        """Completion of the project (its open tasks and the scope still to come, see `projection`) and of
        each open milestone (its open tasks), by Monte-Carlo."""
        project = self.project(tenant_id, project_id)
        if now is None:
            known = self._store.tasks(tenant_id, list(project.task_ids))
            now = self.now_for(project.timestamp(), *(t.timestamp() for t in known if t.is_open))
        return self.forecast_batch(tenant_id, [], [project_id], now, trace_id, simulations).projects[project_id]

    def forecast_batch(self, tenant_id: str, task_ids: Sequence[str], project_ids: Sequence[str], now: datetime,
                       trace_id: str | None = None, simulations: int = 0) -> Forecasts:
        """Predictions of the tasks ``task_ids`` and forecasts of the projects ``project_ids`` as of ``now``
        (unknown ids are left out): ONE model run over every open task involved, ONE Monte-Carlo simulation
        per project (its milestones read the same runs), one milestone-model run for all their milestones.
        What a batch of events touches is forecast together this way."""
        if simulations < 0 or simulations > MAX_SIMULATIONS:
            raise InvalidArgument(f"simulations must be within 0..{MAX_SIMULATIONS}")
        projects = [p for p in (self._store.project(tenant_id, pid) for pid in dict.fromkeys(project_ids))
                    if p is not None]
        wanted = list(dict.fromkeys([*task_ids, *(t for p in projects for t in p.task_ids)]))
        known = {t.task_id: t for t in self._store.tasks(tenant_id, wanted)}
        version = self._model.current
        q = self._quantiles(version, tenant_id, list(known.values()), now)
        tasks = {tid: self._task_prediction(tenant_id, known[tid], q, now, version, trace_id)
                 for tid in dict.fromkeys(task_ids) if tid in known}
        cases = [_case(p, [known[t] for t in p.task_ids if t in known], q, now) for p in projects]
        out = self._project_forecasts(tenant_id, cases, version, trace_id, simulations or self._simulations)
        return Forecasts(tasks, out)

    def _task_prediction(self, tenant_id: str, task: TaskState, q: Quantiles, at: datetime, version: VersionedModel,
                         trace_id: str | None) -> events_pb2.TimelinePrediction:
        hours = q.get(task.task_id, (0.0, 0.0, 0.0))
        miss = 0.0
        if task.due_at is not None and task.is_open:
            miss = _p_miss_lognormal(hours, (task.due_at - at).total_seconds() / 3600.0)
        stamps = {"task_state": task.timestamp()}
        person = self._store.person(tenant_id, task.assignee_id) if task.assignee_id else None
        if person is not None:
            stamps["person_state"] = person.timestamp()
        base = at if task.is_open else (task.done_at or at)
        return _prediction(EK.ENTITY_KIND_TASK, task.task_id, task.project_id, hours, base, miss,
                           build_provenance(version.name, version.version, trace_id, stamps))

    def _project_forecasts(self, tenant_id: str, cases: Sequence[_Case], version: VersionedModel,
                           trace_id: str | None, n: int) -> dict[str, ProjectForecast]:
        params = self.project_params(version)
        open_ms = [[(m, ts) for m, ts in ((m, ordered(t for t in c.tasks if t.milestone_id == m.milestone_id))
                                          for m in c.project.milestones if not m.completed) if ts] for c in cases]
        served = self._milestone_days(tenant_id, [pair for ms in open_ms for pair in ms], cases[0].at if cases
                                      else datetime.now(UTC))
        out: dict[str, ProjectForecast] = {}
        k = 0  # index into the milestone model's answers (all projects' open milestones in one run)
        for c, milestones in zip(cases, open_ms, strict=True):
            stamps = {"project_state": c.project.timestamp(),
                      **({"task_state": max(t.timestamp() for t in c.tasks)} if c.tasks else {})}
            provenance = build_provenance(version.name, version.version, trace_id, stamps)
            groups: list[tuple[Sequence[str] | None, datetime | None]] = [
                (None, c.project.deadline), *(([t.task_id for t in ts], m.due_at) for m, ts in milestones)]
            runs = forecast_targets(c.remaining, c.scope, params, simulations_for(n, len(c.remaining)),
                                    [(targets, _days(due, c.at)) for targets, due in groups], seed=self._seed)
            whole = runs[0]
            out_ms = []
            for (m, _), f in zip(milestones, runs[1:], strict=True):
                hours = (f.p10 * 24.0, f.p50 * 24.0, f.p90 * 24.0)
                source = provenance
                if served is not None:
                    # the model's p50 (it beat Monte-Carlo on validation); Monte-Carlo's interval and P(miss)
                    p50 = float(served[1][k]) * 24.0
                    hours = (min(hours[0], p50), p50, max(hours[2], p50))
                    source = build_provenance(served[0].name, served[0].version, trace_id, stamps)
                k += 1
                out_ms.append(_prediction(EK.ENTITY_KIND_MILESTONE, m.milestone_id, c.project.project_id, hours,
                                          c.at, float(f.p_miss_deadline or 0.0), source))
            project = _prediction(EK.ENTITY_KIND_PROJECT, c.project.project_id, c.project.project_id,
                                  (whole.p10 * 24.0, whole.p50 * 24.0, whole.p90 * 24.0), c.at,
                                  float(whole.p_miss_deadline or 0.0), provenance)
            out[c.project.project_id] = ProjectForecast(project, tuple(out_ms))
        return out

    def _milestone_version(self) -> VersionedModel | None:
        """The milestone model when one is loaded and its schema matches; else None (logged once)."""
        if self._milestone is None:
            return None
        try:
            version = self._milestone.current
            milestone_meta_of(version.model)
        except Unavailable as exc:
            if "milestone" not in self._warned:
                self._warned.add("milestone")
                log.warning("no milestone model (%s): milestone forecasts are Monte-Carlo only", exc)
            return None
        self._warned.discard("milestone")
        return version

    def _milestone_days(self, tenant_id: str, open_ms: Sequence[tuple[MilestoneState, list[TaskState]]],
                        at: datetime) -> tuple[VersionedModel, np.ndarray] | None:
        """The milestone model (the version that ran) and its remaining days per milestone, when it is served
        for the p50 (else None)."""
        version = self._milestone_version()
        if version is None or not open_ms:
            return None
        days = run_milestone(version, [milestone_inputs(self._store, tenant_id, ts, m, at) for m, ts in open_ms])
        if not milestone_meta_of(version.model).use_for_p50:
            log.info("milestone model %s v%s (not served: Monte-Carlo was better on validation): %s days",
                     version.name, version.version, np.round(days, 1).tolist())
            return None
        return version, days


def _case(project: ProjectState, known: Sequence[TaskState], q: Quantiles, at: datetime) -> _Case:
    """``project``'s Monte-Carlo inputs from its known tasks (in its task order) and their forecasts."""
    tasks = [t for t in known if t.is_open]
    remaining = [RemainingTask(t.task_id, None, t.depends_on, _positive(*q[t.task_id])) for t in tasks]
    scope = scope_snapshot(project.start, project.planned_deadline or project.deadline,
                           [t.created_at for t in known],
                           [(t.created_at, t.done_at) for t in known if t.done_at is not None],
                           [t.created_at for t in tasks], at)
    return _Case(project, tasks, remaining, scope, at)


def _days(until: datetime | None, now: datetime) -> float | None:
    return None if until is None else (until - now).total_seconds() / 86400.0


def _positive(p10: float, p50: float, p90: float) -> tuple[float, float, float]:
    lo = max(float(p10), 1e-3)
    mid = max(float(p50), lo)
    return lo, mid, max(float(p90), mid)


def _p_miss_lognormal(hours: tuple[float, float, float], until_due_h: float) -> float:
    from math import erf, log, sqrt

    from services.timeline.montecarlo import lognormal_from_quantiles

    if until_due_h <= 0:
        return 1.0
    mu, sigma = lognormal_from_quantiles(*_positive(*hours))
    if sigma <= 0:
        return float(mu > log(until_due_h))
    return 0.5 * (1.0 - erf((log(until_due_h) - mu) / (sigma * sqrt(2.0))))


def _prediction(kind: int, entity_id: str, project_id: str, hours: tuple[float, float, float], base: datetime,
                miss: float, provenance: common_pb2.Provenance) -> events_pb2.TimelinePrediction:
    out = events_pb2.TimelinePrediction(
        entity_kind=kind, entity_id=entity_id, project_id=project_id, remaining_hours_p10=hours[0],  # type: ignore[arg-type]
        remaining_hours_p50=hours[1], remaining_hours_p90=hours[2], deadline_miss_probability=miss,
        provenance=provenance)
    for field, h in zip((out.completion_p10, out.completion_p50, out.completion_p90), hours, strict=True):
        field.FromDatetime(base + timedelta(hours=h))
    return out
