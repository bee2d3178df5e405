"""Training of the milestone model on the task model's replay: daily probes of every open milestone
(`milestone.build_milestone_dataset`), split at the task model's week boundaries (train | validation weeks
| held-out weeks), MilestoneNet fitted on the training weeks (early stopping on validation), compared on
validation and held-out weeks with the served Monte-Carlo p50 and the milestone's due date (MAE, days);
exported deterministic (ONNX == torch verified at two (batch, n_tasks) sizes, dynamic axes checked), stamped
with whether it beat Monte-Carlo on validation (then the service uses it for the milestone p50), registered
as ``timeline-milestone`` through `mesh.models.register_and_promote` (`challenger`; `champion` only when it
beats the current champion re-scored on this run's validation probes)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from mesh.config import MeshSettings
from mesh.models import (
    Challenger,
    ExportReport,
    ModelRegistry,
    Objective,
    OnnxModel,
    PromotionDecision,
    StaticModel,
    VersionedModel,
    register_and_promote,
    stamp_metadata,
    time_range,
)
from services.timeline.milestone import (
    MILESTONE_FEATURES,
    MILESTONE_MODEL_NAME,
    N_MILESTONE_FEATURES,
    MilestoneSamples,
    MilestoneSplit,
    MKey,
    build_milestone_dataset,
    mae_days,
    milestone_metadata,
    run_milestone,
    split_milestones,
)
from services.timeline.model import (
    MilestoneModelConfig,
    MilestoneNet,
    TrainConfig,
    export_deterministic,
    predict,
    train,
)
from services.timeline.predictor import TimelinePredictor
from services.timeline.state import TimelineStore

log = logging.getLogger(__name__)
METRIC = "val_mae_days"
MC_SIMULATIONS = 500


@dataclass(frozen=True)
class MilestoneTrained:
    split: MilestoneSplit
    net: MilestoneNet
    report: ExportReport
    val: dict[str, float]
    """validation MAE (days) of ``model``, ``montecarlo``, ``due_date`` (on the probes all three have)"""
    test: dict[str, float]
    n_test: int
    use_for_p50: bool

    @property
    def path(self) -> Path:
        return self.report.path

    def versioned(self, version: str = "0") -> VersionedModel:
        return VersionedModel(MILESTONE_MODEL_NAME, version, OnnxModel.load(self.path, MeshSettings().models))


def montecarlo_p50(task_model: VersionedModel, simulations: int = MC_SIMULATIONS) -> Any:
    """The served Monte-Carlo milestone p50 (days) with ``task_model``, no milestone model."""
    def run(store: TimelineStore, tenant: str, project_id: str, now: datetime) -> dict[str, float]:
        forecast = TimelinePredictor(store, StaticModel(task_model), simulations=simulations).predict_project(
            tenant, project_id, now=now)
        return {m.entity_id: m.remaining_hours_p50 / 24.0 for m in forecast.milestones}
    return run


def scores(samples: MilestoneSamples, model_days: np.ndarray) -> dict[str, float]:
    """MAE (days) of the model, Monte-Carlo and the due date, on the probes where all three are known."""
    ok = np.isfinite(samples.mc_days) & np.isfinite(samples.due_days)
    truth = samples.days()[ok]
    return {"model": mae_days(model_days[ok], truth), "montecarlo": mae_days(samples.mc_days[ok], truth),
            "due_date": mae_days(samples.due_days[ok], truth), "n": float(ok.sum())}


def train_milestone(events: list[Any], completed: Mapping[MKey, tuple[str, datetime]], task_model: VersionedModel,
                    val_start: datetime, test_start: datetime, out_dir: Path, hidden: int = 32, epochs: int = 60,
                    seed: int = 0) -> MilestoneTrained:
    """``events``: the task model's history; ``completed``: when its milestones completed (simulator truth
    or `MilestoneCompleted` events); ``val_start``/``test_start``: the task model's split."""
    samples = build_milestone_dataset(events, completed, monte_carlo=montecarlo_p50(task_model),
                                      monte_carlo_from=val_start - timedelta(days=1))
    split = split_milestones(samples, val_start, test_start)
    log.info("milestone probes: train %d, val %d, test %d", len(split.train), len(split.val), len(split.test))
    if len(split.train) == 0 or len(split.val) == 0:
        raise ValueError("no milestone probes to train or validate on")
    net = MilestoneNet(MilestoneModelConfig(N_MILESTONE_FEATURES, hidden=hidden, dropout=0.1))
    train(net, split.train.inputs(), split.train.y, TrainConfig(epochs=epochs, patience=8, seed=seed, batch_size=32),
          val=(split.val.inputs(), split.val.y))
    val = scores(split.val, np.expm1(predict(net, split.val.inputs()).astype(np.float64)))
    test = scores(split.test, np.expm1(predict(net, split.test.inputs()).astype(np.float64))) if len(split.test) \
        else {"model": float("nan"), "montecarlo": float("nan"), "due_date": float("nan"), "n": 0.0}
    use = bool(val["model"] < val["montecarlo"])
    log.info("milestone validation MAE days %s, held-out %s: model %s Monte-Carlo for the p50", val, test,
             "replaces" if use else "does not replace")
    out_dir.mkdir(parents=True, exist_ok=True)
    report = export_deterministic(net, out_dir / "milestone.onnx", check_sizes=((1, 3), (7, 11)))
    stamp_metadata(report.path, milestone_metadata(use, {k: v for k, v in val.items() if k != "n"}))
    return MilestoneTrained(split, net, report, val, test, int(test["n"]), use)


def register_and_promote_milestone(trained: MilestoneTrained, registry: ModelRegistry, settings: MeshSettings
                                   ) -> PromotionDecision:
    """Register as ``challenger``, promoted by `mesh.models.register_and_promote` on the validation MAE of this
    run's validation probes (the champion re-scored on the same probes)."""
    metrics = {METRIC: trained.val["model"], "val_mae_days_montecarlo": trained.val["montecarlo"],
               "val_mae_days_due_date": trained.val["due_date"], "test_mae_days": trained.test["model"],
               "test_mae_days_montecarlo": trained.test["montecarlo"],
               "test_mae_days_due_date": trained.test["due_date"]}
    params: dict[str, str | int | float | bool] = {"train_probes": len(trained.split.train),
                                                   "use_for_p50": trained.use_for_p50}
    val = trained.split.val
    objective = Objective(METRIC, False, lambda version: scores(val, run_milestone(version, val.rows))["model"])
    challenger = Challenger(MILESTONE_MODEL_NAME, trained.path, MILESTONE_FEATURES, metrics, params,
                            time_range(trained.split.train.at))
    return register_and_promote(registry, challenger, objective, settings.models)
