"""Quality of remaining-duration forecasts (MAE, MAPE above a floor, 80% interval coverage), the two
baselines (median by task type, median by assignee), and the project completion-date error at fixed
fractions of each project's life."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC

import numpy as np
from numpy.typing import NDArray

from mesh.models import StaticModel, VersionedModel
from services.timeline.calibration import interval_coverage
from services.timeline.dataset import ProjectProbe, Samples
from services.timeline.effort_slot import EffortPrior
from services.timeline.predictor import HoursQuantiles, TimelinePredictor
from services.timeline.projection import ProjectCase, ProjectParams

MAPE_FLOOR_HOURS = 8.0
"""MAPE counts outcomes of at least this many hours (a few minutes' error on a tiny one is not 1000%)."""
Forecaster = Callable[[Samples], HoursQuantiles]


@dataclass(frozen=True)
class TaskQuality:
    mae_hours: float
    mape: float
    coverage_80: float
    n: int


def task_quality(samples: Samples, q: HoursQuantiles, floor: float = MAPE_FLOOR_HOURS) -> TaskQuality:
    y = samples.hours()
    above = y >= floor
    mape = float(np.mean(np.abs(q.p50[above] - y[above]) / y[above])) if above.any() else float("nan")
    return TaskQuality(float(np.mean(np.abs(q.p50 - y))), mape, interval_coverage(y, q.p10, q.p90), len(y))


class GroupMedian:
    """Baseline: per-group p10/p50/p90 of the training outcomes (hours), the global ones for unseen groups."""

    def __init__(self, train: Samples, group: Callable[[Samples], Sequence[str]]) -> None:
        self._group = group
        y = train.hours()
        self._all = _quantiles(y)
        keys = np.asarray(group(train))
        self._by = {k: _quantiles(y[keys == k]) for k in set(keys.tolist())}

    def __call__(self, samples: Samples) -> HoursQuantiles:
        rows = np.asarray([self._by.get(k, self._all) for k in self._group(samples)]).reshape(-1, 3)
        return HoursQuantiles(rows[:, 0], rows[:, 1], rows[:, 2])


def _quantiles(y: NDArray[np.float64]) -> tuple[float, float, float]:
    lo, mid, hi = np.quantile(y, [0.1, 0.5, 0.9])
    return float(lo), float(mid), float(hi)


def baselines(train: Samples) -> dict[str, Forecaster]:
    return {"baseline_type_median": GroupMedian(train, lambda s: s.task_types),
            "baseline_assignee_median": GroupMedian(train, lambda s: s.assignees)}


@dataclass(frozen=True)
class ProjectQuality:
    """Mean absolute error (days) of the predicted completion date, per fraction of the project's life."""

    mae_days: dict[str, float]
    deadline_mae_days: dict[str, float]
    """the same for the baseline 'the project completes on its current deadline'"""
    n_projects: int
    n_probes: dict[str, int] = field(default_factory=dict)


def project_quality(probes: Sequence[ProjectProbe], model: VersionedModel, simulations: int = 2000,
                    params: ProjectParams | None = None, effort: EffortPrior | None = None) -> ProjectQuality:
    """``params``: the project-forecast parameters to use (default: the ones stamped in the model)."""
    errors: dict[str, list[float]] = {}
    deadline_errors: dict[str, list[float]] = {}
    for probe in probes:
        predictor = TimelinePredictor(probe.store, StaticModel(model), simulations=simulations, effort=effort,
                                      project_params=params)
        forecast = predictor.predict_project(probe.tenant_id, probe.project_id, now=probe.at)
        predicted = forecast.project.completion_p50.ToDatetime(tzinfo=UTC).timestamp()
        truth = probe.completed_at.timestamp()
        key = f"{round(probe.fraction * 100)}%"
        errors.setdefault(key, []).append(abs(predicted - truth) / 86400.0)
        if probe.deadline is not None:
            deadline_errors.setdefault(key, []).append(abs(probe.deadline.timestamp()
                                                           - probe.completed_at.timestamp()) / 86400.0)
    return ProjectQuality({k: float(np.mean(v)) for k, v in errors.items()},
                          {k: float(np.mean(v)) for k, v in deadline_errors.items()},
                          len({(p.tenant_id, p.project_id) for p in probes}),
                          {k: len(v) for k, v in errors.items()})


def project_cases(probes: Sequence[ProjectProbe], model: VersionedModel,
                  effort: EffortPrior | None = None) -> list[ProjectCase]:
    """The Monte-Carlo inputs of each probe (task forecasts from ``model``) and its truth, for fitting the
    project-forecast parameters (`projection.fit_project_params`)."""
    out = []
    for probe in probes:
        predictor = TimelinePredictor(probe.store, StaticModel(model), effort=effort)
        project, _, remaining, scope, at = predictor.project_case(probe.tenant_id, probe.project_id, probe.at)
        deadline = None if project.deadline is None else (project.deadline - at).total_seconds() / 86400.0
        out.append(ProjectCase(tuple(remaining), scope, deadline, (probe.completed_at - at).total_seconds() / 86400.0))
    return out


def quality_table(quality: dict[str, TaskQuality]) -> str:
    lines = [f"{'model':<28}{'MAE h':>9}{'MAPE':>8}{'cov80':>8}{'n':>7}"]
    lines += [f"{k:<28}{q.mae_hours:>9.1f}{q.mape:>8.3f}{q.coverage_80:>8.3f}{q.n:>7}" for k, q in quality.items()]
    return "\n".join(lines)
