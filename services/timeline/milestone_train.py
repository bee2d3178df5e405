"""Training of the milestone model on the task model's replay: daily probes of every open milestone
(`milestone.build_milestone_dataset`), split at the task model's week boundaries (train | validation weeks
| held-out weeks), MilestoneNet fitted on the training weeks (early stopping on validation), compared on
validation and held-out weeks with the served Monte-Carlo p50 and the milestone's due date (MAE, days);
exported deterministic (ONNX == torch verified at two (batch, n_tasks) sizes, dynamic axes checked), stamped
with whether it beat Monte-Carlo on validation (then the service uses it for the milestone p50), registered
as ``timeline-milestone`` (`challenger`; `champion` only when it beats the current champion on this run's
validation probes)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from mesh.config import MeshSettings
from mesh.models import CHALLENGER, CHAMPION, ExportReport, ModelRegistry, OnnxModel, StaticModel, VersionedModel
from services.timeline.milestone import (
    MILESTONE_MODEL_NAME,
    N_MILESTONE_FEATURES,
    MilestoneSamples,
    MilestoneSplit,
    build_milestone_dataset,
    mae_days,
    milestone_metadata,
    milestone_truth,
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


def train_milestone(events: list[Any], truth: Any, task_model: VersionedModel, val_start: datetime,
                    test_start: datetime, out_dir: Path, hidden: int = 32, epochs: int = 60,
                    seed: int = 0) -> MilestoneTrained:
    """``events``/``truth``: the task model's simulated world; ``val_start``/``test_start``: its split."""
    samples = build_milestone_dataset(events, milestone_truth(truth), monte_carlo=montecarlo_p50(task_model),
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
    model = onnx.load(str(report.path))
    onnx.helper.set_model_props(model, milestone_metadata(use, {k: v for k, v in val.items() if k != "n"}))
    onnx.save(model, str(report.path))
    return MilestoneTrained(split, net, report, val, test, int(test["n"]), use)


def register_and_promote_milestone(trained: MilestoneTrained, registry: ModelRegistry, settings: MeshSettings) -> str:
    """Register as ``challenger``; ``champion`` only when its validation MAE beats the current champion's
    re-scored on this run's validation probes (one that cannot be scored loses)."""
    val = trained.val["model"]
    metrics = {METRIC: val, "val_mae_days_montecarlo": trained.val["montecarlo"],
               "val_mae_days_due_date": trained.val["due_date"], "test_mae_days": trained.test["model"],
               "test_mae_days_montecarlo": trained.test["montecarlo"],
               "test_mae_days_due_date": trained.test["due_date"]}
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    params: dict[str, str | int | float | bool] = {"train_probes": len(trained.split.train),
                                                   "use_for_p50": trained.use_for_p50}
    train_at = trained.split.train.at
    version = registry.log_and_register(MILESTONE_MODEL_NAME, trained.path, metrics, params,
                                        (min(train_at), max(train_at)), alias=CHALLENGER)
    champion = registry.version_of(MILESTONE_MODEL_NAME, CHAMPION)
    champion_mae = None
    if champion is not None:
        try:
            old = VersionedModel(MILESTONE_MODEL_NAME, champion, OnnxModel.load(
                registry.local_path(MILESTONE_MODEL_NAME, champion), settings.models))
            champion_mae = scores(trained.split.val, run_milestone(old, trained.split.val.rows))["model"]
        except Exception as exc:  # another feature layout cannot be compared: it loses
            log.warning("milestone champion v%s cannot be re-scored (%s)", champion, exc)
    if champion_mae is not None and val >= champion_mae:
        return f"v{version} kept as challenger: {METRIC} {val:.2f} >= champion v{champion} {champion_mae:.2f}"
    registry.set_alias(MILESTONE_MODEL_NAME, CHAMPION, version)
    before = "none" if champion is None else f"v{champion} ({champion_mae})"
    return f"v{version} promoted to champion: {METRIC} {val:.2f} (previous champion {before})"
