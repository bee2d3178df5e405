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

import numpy as np
from sunday.ml.v1 import common_pb2, events_pb2

from mesh.errors import InvalidArgument, NotFound, Unavailable
from mesh.models import FeatureSchema, ModelSource, OnnxModel, VersionedModel, build_provenance, check_feature_schema
from services.timeline.calibration import ConformalCalibrator
from services.timeline.effort_slot import ConstantPrior, EffortPrior
from services.timeline.features import FEATURE_SCHEMA, STATIC_NAMES, TaskInputs, task_inputs
from services.timeline.milestone import milestone_inputs, milestone_meta_of, ordered, run_milestone
from services.timeline.montecarlo import RemainingTask
from services.timeline.projection import DEFAULT, ProjectParams, ScopeSnapshot, forecast_project, scope_snapshot
from services.timeline.state import MilestoneState, ProjectState, TaskState, TimelineStore
from services.timeline.tensors import TASK_OUTPUT, quantiles_from_passes, repeat_for_mc

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


class TimelinePredictor:
    """Task and project forecasts from the state store and the loaded model."""

    def __init__(self, store: TimelineStore, model: ModelSource, *, simulations: int = DEFAULT_SIMULATIONS,
                 seed: int = 0, effort: EffortPrior | None = None, project_params: ProjectParams | None = None,
                 milestone_model: ModelSource | None = None) -> None:
        """``effort``: the prior the served model was trained with (constant when None or when the model
        was trained without one); ``project_params`` overrides the model's fitted ones (evaluation);
        ``milestone_model``: the milestone model (None or not loaded: Monte-Carlo milestone forecasts)."""
        self._milestone = milestone_model
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
        """Remaining hours of open ``tasks`` (done ones get 0)."""
        open_ix = [i for i, t in enumerate(tasks) if t.is_open]
        out = [np.zeros(len(tasks)) for _ in range(3)]
        if open_ix:
            version = self._model.current
            q = run_mc(version, task_inputs(self._store, tenant_id, [tasks[i] for i in open_ix], now,
                                            self._prior(version)))
            for arr, part in zip(out, (q.p10, q.p50, q.p90), strict=True):
                arr[open_ix] = part
        return HoursQuantiles(*out)

    def predict_task(self, tenant_id: str, task_id: str, now: datetime | None = None,
                     trace_id: str | None = None) -> events_pb2.TimelinePrediction:
        task = self.task(tenant_id, task_id)
        at = now or self.now_for(task.as_of)
        version = self._model.current
        q = self.forecast(tenant_id, [task], at)
        hours = (float(q.p10[0]), float(q.p50[0]), float(q.p90[0]))
        miss = 0.0
        if task.due_at is not None and task.is_open:
            miss = _p_miss_lognormal(hours, (task.due_at - at).total_seconds() / 3600.0)
        stamps = {"task_state": task.as_of}
        person = self._store.person(tenant_id, task.assignee_id) if task.assignee_id else None
        if person is not None:
            stamps["person_state"] = person.as_of
        base = at if task.is_open else (task.done_at or at)
        return _prediction(EK.ENTITY_KIND_TASK, task.task_id, task.project_id, hours, base, miss,
                           build_provenance(version.name, version.version, trace_id, stamps))

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
        tasks = [t for t in known if t.is_open]
        at = now or self.now_for(project.as_of, *(t.as_of for t in tasks))
        q = self.forecast(tenant_id, tasks, at)
        remaining = [RemainingTask(t.task_id, None, t.depends_on, _positive(q.p10[i], q.p50[i], q.p90[i]))
                     for i, t in enumerate(tasks)]
        scope = scope_snapshot(project.start, project.planned_deadline or project.deadline,
                               [t.created_at for t in known],
                               [(t.created_at, t.done_at) for t in known if t.done_at is not None],
                               [t.created_at for t in tasks], at)
        return project, tasks, remaining, scope, at

    def predict_project(self, tenant_id: str, project_id: str, now: datetime | None = None,
                        simulations: int = 0, trace_id: str | None = None) -> ProjectForecast:
        """Completion of the project (its open tasks and the scope still to come, see `projection`) and of
        each open milestone (its open tasks), by Monte-Carlo."""
        if simulations < 0 or simulations > MAX_SIMULATIONS:
            raise InvalidArgument(f"simulations must be within 0..{MAX_SIMULATIONS}")
        project, tasks, remaining, scope, at = self.project_case(tenant_id, project_id, now)
        version = self._model.current
        params = self.project_params(version)
        stamps = {"project_state": project.as_of, **({"task_state": max(t.as_of for t in tasks)} if tasks else {})}
        provenance = build_provenance(version.name, version.version, trace_id, stamps)
        n = simulations or self._simulations
        whole = self._simulate(remaining, scope, None, project.deadline, at, n, params)
        out = _prediction(EK.ENTITY_KIND_PROJECT, project.project_id, project.project_id, whole[0], at, whole[1],
                          provenance)
        open_ms = [(m, ordered(t for t in tasks if t.milestone_id == m.milestone_id)) for m in project.milestones
                   if not m.completed]
        open_ms = [(m, ts) for m, ts in open_ms if ts]
        served = self._milestone_days(tenant_id, open_ms, at)
        milestones = []
        for i, (m, targets) in enumerate(open_ms):
            hours, miss = self._simulate(remaining, None, [t.task_id for t in targets], m.due_at, at, n, params)
            source = provenance
            if served is not None:
                # the model's p50 (it beat Monte-Carlo on validation); Monte-Carlo's interval and P(miss)
                p50 = float(served[1][i]) * 24.0
                hours = (min(hours[0], p50), p50, max(hours[2], p50))
                source = build_provenance(served[0].name, served[0].version, trace_id, stamps)
            milestones.append(_prediction(EK.ENTITY_KIND_MILESTONE, m.milestone_id, project.project_id, hours, at,
                                          miss, source))
        return ProjectForecast(out, tuple(milestones))

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

    def _simulate(self, tasks: list[RemainingTask], scope: ScopeSnapshot | None, targets: list[str] | None,
                  deadline: datetime | None, now: datetime, n: int, params: ProjectParams
                  ) -> tuple[tuple[float, float, float], float]:
        days = None if deadline is None else (deadline - now).total_seconds() / 86400.0
        f = forecast_project(tasks, scope, params, n, deadline_days=days, seed=self._seed, targets=targets)
        return (f.p10 * 24.0, f.p50 * 24.0, f.p90 * 24.0), float(f.p_miss_deadline or 0.0)


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
