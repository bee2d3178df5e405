"""`python -m services.timeline.train`: simulated events -> point-in-time samples (replay through the
service's state) -> time-ordered split (train | 2 validation weeks | 2 held-out weeks) -> BiLSTM+attention
with MC dropout -> conformal calibration of the 80% interval on the validation weeks -> verified ONNX ->
evaluation against the baselines on the held-out weeks -> MLflow (`challenger`) -> `champion` only when
the challenger's validation MAE beats the champion's, re-scored on this run's validation weeks."""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mesh.config import MeshSettings
from mesh.models import CHALLENGER, CHAMPION, ModelRegistry, OnnxModel, VersionedModel
from services.timeline.calibration import ConformalCalibrator, fit_conformal
from services.timeline.dataset import (
    Dataset,
    ProjectProbe,
    Samples,
    Split,
    build_dataset,
    labels_from_truth,
    project_completions,
    split_by_week,
)
from services.timeline.effort_prior import EffortPrior
from services.timeline.evaluate import (
    ProjectQuality,
    TaskQuality,
    baselines,
    project_cases,
    project_quality,
    quality_table,
    task_quality,
)
from services.timeline.export import DEFAULT_PASSES, Exported, export_task_model, stamp_project_params
from services.timeline.features import N_STATIC
from services.timeline.model import TaskDurationNet, TaskModelConfig, TrainConfig, predict_distribution, train
from services.timeline.predictor import MODEL_NAME, HoursQuantiles, run_mc
from services.timeline.projection import ParamFit, ProjectParams, fit_project_params
from simulator import SimConfig, Simulation

log = logging.getLogger(__name__)
METRIC = "val_mae_hours"
MODEL_KEY = "bilstm_mcdropout"


DEFAULT_SIM = SimConfig(tenants=3, users_per_tenant=20, weeks=12, seed=1)
"""The simulated world trained on by default."""


@dataclass(frozen=True)
class Options:
    hidden: int = 32
    dropout: float = 0.2
    epochs: int = 40
    patience: int = 6
    passes: int = DEFAULT_PASSES
    seed: int = 0


@dataclass(frozen=True)
class Trained:
    split: Split
    dataset: Dataset
    net: TaskDurationNet
    calibrator: ConformalCalibrator
    raw_val_coverage: float
    """coverage of the uncalibrated MC-dropout p10-p90 on the validation weeks"""
    exported: Exported
    test: dict[str, TaskQuality]
    val: dict[str, TaskQuality]
    effort: EffortPrior | None = None
    project_fit: ParamFit | None = None
    """the project-forecast parameters chosen on the validation projects (None: the defaults)"""

    def versioned(self, version: str = "0") -> VersionedModel:
        return VersionedModel(MODEL_NAME, version, OnnxModel.load(self.exported.mc_path, MeshSettings().models))


def simulate(config: SimConfig) -> tuple[list[Any], Any]:
    sim = Simulation(config)
    events = list(sim.events())
    return events, sim.truth


def simulated_dataset(data: SimConfig, effort: EffortPrior | None = None, samples: bool = True) -> Dataset:
    """``samples=False``: the project probes only (a world used to fit or evaluate project forecasts)."""
    events, truth = simulate(data)
    return build_dataset(events, labels_from_truth(truth), project_completions(truth), effort=effort,
                         with_samples=samples)


def _inputs(s: Samples) -> list[Any]:
    i = s.inputs()
    return [i.events, i.event_mask, i.static]


def onnx_forecaster(model: VersionedModel) -> Any:
    return lambda s: run_mc(model, s.inputs())


def train_all(dataset: Dataset, out_dir: Path, options: Options = Options(), effort: EffortPrior | None = None,
              project_val: Sequence[ProjectProbe] = ()) -> Trained:
    """``effort``: the prior ``dataset``'s features were built with (recorded in the model);
    ``project_val``: validation project probes (not the held-out weeks) to choose the project-forecast
    parameters on, stamped into the model."""
    split = split_by_week(dataset.samples)
    log.info("samples: train %d, val %d, test %d", len(split.train), len(split.val), len(split.test))
    net = TaskDurationNet(TaskModelConfig(N_STATIC, hidden=options.hidden, dropout=options.dropout))
    train(net, _inputs(split.train), split.train.y, TrainConfig(epochs=options.epochs, patience=options.patience,
                                                                  seed=options.seed),
          val=(_inputs(split.val), split.val.y))
    raw = predict_distribution(net, _inputs(split.val), n=options.passes, seed=options.seed)
    raw_cov = float(np.mean((split.val.y >= raw.p10) & (split.val.y <= raw.p90)))
    calibrator = fit_conformal(split.val.y, raw.p10, raw.p50, raw.p90, coverage=0.8, method="scale")
    log.info("raw MC-dropout 80%% coverage on validation %.3f; conformal scale q=%.3f", raw_cov, calibrator.q)
    exported = export_task_model(net, calibrator, out_dir, options.passes,
                                 effort.name if effort is not None else "constant")
    model = VersionedModel(MODEL_NAME, "0", OnnxModel.load(exported.mc_path, MeshSettings().models))
    fit = None
    if project_val:
        fit = fit_project_params(project_cases(project_val, model, effort))
        log.info("project parameters %s (validation MAE %.1f days over %d probes)", fit.params, fit.mae_days,
                 len(project_val))
        stamp_project_params(exported.mc_path, fit.params)
        model = VersionedModel(MODEL_NAME, "0", OnnxModel.load(exported.mc_path, MeshSettings().models))
    fns = {MODEL_KEY: onnx_forecaster(model), **baselines(split.train)}
    return Trained(split, dataset, net, calibrator, raw_cov, exported,
                   {k: task_quality(split.test, f(split.test)) for k, f in fns.items()},
                   {k: task_quality(split.val, f(split.val)) for k, f in fns.items()}, effort, fit)


def evaluate_projects(trained: Trained, probes: Sequence[ProjectProbe] | None = None, simulations: int = 2000,
                      params: ProjectParams | None = None) -> ProjectQuality:
    return project_quality(trained.dataset.probes if probes is None else probes, trained.versioned(), simulations,
                           params, trained.effort)


def register_and_promote(trained: Trained, registry: ModelRegistry, settings: MeshSettings) -> str:
    """Register the MC graph as `challenger`; move `champion` to it only when its validation MAE beats the
    current champion's re-scored on this run's validation weeks (one that cannot be scored loses)."""
    val, test = trained.val[MODEL_KEY], trained.test[MODEL_KEY]
    metrics = {METRIC: val.mae_hours, "val_coverage_80": val.coverage_80, "test_mae_hours": test.mae_hours,
               "test_mape": test.mape, "test_coverage_80": test.coverage_80}
    params: dict[str, str | int | float | bool] = {"train_samples": len(trained.split.train),
                                                   "conformal_q": trained.calibrator.q,
                                                   "raw_val_coverage": trained.raw_val_coverage}
    version = registry.log_and_register(MODEL_NAME, trained.exported.mc_path, metrics, params,
                                        trained.split.train.time_range(), alias=CHALLENGER)
    champion = registry.version_of(MODEL_NAME, CHAMPION)
    champion_mae = None
    if champion is not None:
        try:
            old = VersionedModel(MODEL_NAME, champion,
                                 OnnxModel.load(registry.local_path(MODEL_NAME, champion), settings.models))
            champion_mae = task_quality(trained.split.val, _score(old, trained.split.val)).mae_hours
        except Exception as exc:  # a champion on another feature layout cannot be compared: it loses
            log.warning("champion v%s cannot be re-scored (%s)", champion, exc)
    if champion_mae is not None and val.mae_hours >= champion_mae:
        return f"v{version} kept as challenger: {METRIC} {val.mae_hours:.1f} >= champion v{champion} {champion_mae:.1f}"
    registry.set_alias(MODEL_NAME, CHAMPION, version)
    before = "none" if champion is None else f"v{champion} ({champion_mae})"
    return f"v{version} promoted to champion: {METRIC} {val.mae_hours:.1f} (previous champion {before})"


def _score(model: VersionedModel, samples: Samples) -> HoursQuantiles:
    return run_mc(model, samples.inputs())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.timeline.train", description=__doc__)
    parser.add_argument("--tenants", type=int, default=DEFAULT_SIM.tenants)
    parser.add_argument("--users", type=int, default=DEFAULT_SIM.users_per_tenant)
    parser.add_argument("--weeks", type=int, default=DEFAULT_SIM.weeks)
    parser.add_argument("--seed", type=int, default=DEFAULT_SIM.seed)
    parser.add_argument("--epochs", type=int, default=Options.epochs)
    parser.add_argument("--out", type=Path, default=None, help="where the ONNX files go (default: a temp dir)")
    parser.add_argument("--no-register", action="store_true", help="train and evaluate only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = MeshSettings()
    out = args.out or Path(tempfile.mkdtemp(prefix="timeline-"))
    data = SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks, seed=args.seed)
    dataset = simulated_dataset(data)
    # project-forecast parameters are chosen on another simulated world, not on the held-out weeks
    val_probes = simulated_dataset(replace(data, seed=data.seed + 100), samples=False).probes
    trained = train_all(dataset, out, Options(epochs=args.epochs), project_val=val_probes)
    print(f"held-out weeks from {trained.split.test_start:%Y-%m-%d}:\n{quality_table(trained.test)}")
    print(f"MC dropout alone covered {trained.raw_val_coverage:.3f} of validation outcomes with p10-p90; "
          f"conformal scale factor {trained.calibrator.q:.3f} (fit on the validation weeks)")
    projects = evaluate_projects(trained)
    print(f"project parameters {trained.project_fit.params if trained.project_fit else None}; completion-date MAE "
          f"(days) over {projects.n_projects} projects of the training world: {projects.mae_days}; "
          f"'on the deadline' baseline: {projects.deadline_mae_days}")
    print(f"ONNX files in {out} (deterministic graph max |onnx - torch| "
          f"{trained.exported.deterministic.max_abs_diff:.2e})")
    from services.timeline.milestone import MILESTONE_MODEL_NAME
    from services.timeline.milestone_train import register_and_promote_milestone, train_milestone

    events, truth = simulate(data)  # the same world (same seed): the milestone probes replay it again
    milestone = train_milestone(events, truth, trained.versioned(), trained.split.val_start,
                                trained.split.test_start, out)
    print(f"milestone MAE days, validation {milestone.val}, held-out weeks {milestone.test}; "
          f"{'the model' if milestone.use_for_p50 else 'Monte-Carlo'} serves the milestone p50")
    if not args.no_register:
        registry = ModelRegistry(settings.models)
        print(f"{MODEL_NAME}: {register_and_promote(trained, registry, settings)}")
        print(f"{MILESTONE_MODEL_NAME}: {register_and_promote_milestone(milestone, registry, settings)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
