"""`python -m services.timeline.train [--source eventlog|simulator]`: events (the feature ingestor's
offline event log, or a simulator run) -> point-in-time samples (replay through the service's state) ->
the training skeleton of `mesh.models`: time-ordered split (train | 2 validation weeks | 2 held-out weeks)
-> BiLSTM+attention with MC dropout -> conformal calibration of the 80% interval on the validation weeks
-> verified ONNX -> scored beside the baselines -> MLflow (`challenger`) -> `champion` only when its
validation MAE beats the champion's, re-scored on this run's validation weeks. The milestone model
follows (`milestone_train`).

`simulator` is imported only for `--source simulator`: a deployed image trains from the event log."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mesh.config import MeshSettings
from mesh.events import Envelope
from mesh.mlops import build_reference
from mesh.models import (
    Challenger,
    ModelRegistry,
    Objective,
    OnnxModel,
    PromotionDecision,
    VersionedModel,
    add_training_arguments,
    logged_training_events,
    output_dir,
    register_and_promote,
    score_beside_baselines,
    source_of,
)
from services.timeline.calibration import ConformalCalibrator, fit_conformal
from services.timeline.dataset import (
    Dataset,
    Key,
    ProjectProbe,
    Samples,
    Split,
    build_dataset,
    labels_from_events,
    labels_from_truth,
    milestones_from_events,
    project_completions,
    projects_from_events,
    split_by_week,
)
from services.timeline.effort_slot import EffortPrior
from services.timeline.evaluate import (
    Forecaster,
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
from services.timeline.milestone import MKey, milestone_truth
from services.timeline.model import TaskDurationNet, TaskModelConfig, TrainConfig, predict_distribution, train
from services.timeline.predictor import MODEL_NAME, SCHEMA, run_mc
from services.timeline.projection import ParamFit, ProjectParams, fit_project_params

if TYPE_CHECKING:
    from simulator import SimConfig

log = logging.getLogger(__name__)
REFERENCE_ROWS = 2000
"""training samples summarised into the drift reference stored with the version"""
METRIC = "val_mae_hours"
MODEL_KEY = "bilstm_mcdropout"
DEFAULT_TENANTS, DEFAULT_USERS, DEFAULT_WEEKS, DEFAULT_SEED = 3, 20, 12, 1
"""The simulated world trained on by default (``--source simulator``)."""


def default_sim() -> SimConfig:
    """The default simulated world as a ``simulator.SimConfig`` (imports the simulator)."""
    from simulator import SimConfig

    return SimConfig(tenants=DEFAULT_TENANTS, users_per_tenant=DEFAULT_USERS, weeks=DEFAULT_WEEKS, seed=DEFAULT_SEED)


@dataclass(frozen=True)
class Options:
    hidden: int = 32
    dropout: float = 0.2
    epochs: int = 40
    patience: int = 6
    passes: int = DEFAULT_PASSES
    seed: int = 0


@dataclass(frozen=True)
class History:
    """A training source's time-ordered events and the outcomes known from them."""

    events: list[Envelope]
    task_done: dict[Key, datetime]
    """(tenant, task id) -> when the task was done"""
    projects: dict[Key, tuple[datetime, datetime]]
    """(tenant, project id) -> (start, completed_at) of completed projects"""
    milestones: dict[MKey, tuple[str, datetime]]
    """(tenant, milestone id) -> (project id, completed_at)"""


def simulated_history(config: SimConfig) -> History:
    """A simulator run, labelled by its ground truth."""
    from simulator import Simulation

    sim = Simulation(config)
    events = list(sim.events())
    return History(events, labels_from_truth(sim.truth), project_completions(sim.truth), milestone_truth(sim.truth))


def logged_history(events: list[Envelope]) -> History:
    """Events from the offline event log, labelled by what the events themselves show."""
    return History(events, labels_from_events(events), projects_from_events(events), milestones_from_events(events))


def history_dataset(history: History, effort: EffortPrior | None = None, samples: bool = True) -> Dataset:
    """``samples=False``: the project probes only (a world used to fit or evaluate project forecasts)."""
    return build_dataset(history.events, history.task_done, history.projects, effort=effort, with_samples=samples)


def simulated_dataset(data: SimConfig, effort: EffortPrior | None = None, samples: bool = True) -> Dataset:
    return history_dataset(simulated_history(data), effort, samples)


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


def _inputs(s: Samples) -> list[Any]:
    i = s.inputs()
    return [i.events, i.event_mask, i.static]


def onnx_forecaster(model: VersionedModel) -> Forecaster:
    return lambda s: run_mc(model, s.inputs())


def _quality(forecaster: Forecaster) -> Any:
    return lambda samples: task_quality(samples, forecaster(samples))


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
    held = score_beside_baselines({MODEL_KEY: _quality(onnx_forecaster(model))},
                                  {k: _quality(f) for k, f in baselines(split.train).items()}, split.val, split.test)
    return Trained(split, dataset, net, calibrator, raw_cov, exported, held.test, held.val, effort, fit)


def evaluate_projects(trained: Trained, probes: Sequence[ProjectProbe] | None = None, simulations: int = 2000,
                      params: ProjectParams | None = None) -> ProjectQuality:
    return project_quality(trained.dataset.probes if probes is None else probes, trained.versioned(), simulations,
                           params, trained.effort)


def register_and_promote_task_model(trained: Trained, registry: ModelRegistry, settings: MeshSettings
                                    ) -> PromotionDecision:
    """The MC graph as `challenger`, promoted by `mesh.models.register_and_promote` on the validation MAE
    of this run's validation weeks (the champion re-scored on the same samples)."""
    val, test = trained.val[MODEL_KEY], trained.test[MODEL_KEY]
    metrics = {METRIC: val.mae_hours, "val_coverage_80": val.coverage_80, "test_mae_hours": test.mae_hours,
               "test_mape": test.mape, "test_coverage_80": test.coverage_80,
               **{f"test_mae_hours_{k}": q.mae_hours for k, q in trained.test.items() if k != MODEL_KEY}}
    params: dict[str, str | int | float | bool] = {"train_samples": len(trained.split.train),
                                                   "conformal_q": trained.calibrator.q,
                                                   "raw_val_coverage": trained.raw_val_coverage}
    samples = trained.split.val
    objective = Objective(METRIC, False, lambda version: task_quality(samples, run_mc(version, samples.inputs()))
                          .mae_hours)
    # the training distribution of the static inputs and of the p50: what serving drift is measured against
    train = trained.split.train
    sample = train.subset(np.random.default_rng(0).permutation(len(train))[:REFERENCE_ROWS])
    reference = build_reference(sample.static, SCHEMA.names, run_mc(trained.versioned(), sample.inputs()).p50)
    challenger = Challenger(MODEL_NAME, trained.exported.mc_path, SCHEMA, metrics, params,
                            trained.split.train.time_range(), reference=reference.to_json())
    return register_and_promote(registry, challenger, objective, settings.models)


def training_history(args: argparse.Namespace, settings: MeshSettings) -> tuple[History, list[ProjectProbe] | None]:
    """The history to train on and, for a simulator run, the project probes of another simulated world to
    choose the project-forecast parameters on (None: use the training history's validation weeks)."""
    if source_of(args) == "eventlog":
        return logged_history(logged_training_events(args, settings)), None
    from simulator import SimConfig

    data = SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks, seed=args.seed)
    # project-forecast parameters are chosen on another simulated world, not on the held-out weeks
    val_probes = list(simulated_dataset(replace(data, seed=data.seed + 100), samples=False).probes)
    return simulated_history(data), val_probes


def _project_val(dataset: Dataset, val_probes: list[ProjectProbe] | None) -> list[ProjectProbe]:
    if val_probes is not None:
        return val_probes
    split = split_by_week(dataset.samples)
    return [p for p in dataset.probes if split.val_start <= p.at < split.test_start]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.timeline.train", description=__doc__)
    add_training_arguments(parser, tenants=DEFAULT_TENANTS, users=DEFAULT_USERS, weeks=DEFAULT_WEEKS,
                           seed=DEFAULT_SEED)
    parser.add_argument("--epochs", type=int, default=Options.epochs)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = MeshSettings()
    out = output_dir(args, "timeline-")
    history, val_probes = training_history(args, settings)
    dataset = history_dataset(history)
    trained = train_all(dataset, out, Options(epochs=args.epochs), project_val=_project_val(dataset, val_probes))
    print(f"held-out weeks from {trained.split.test_start:%Y-%m-%d}:\n{quality_table(trained.test)}")
    print(f"MC dropout alone covered {trained.raw_val_coverage:.3f} of validation outcomes with p10-p90; "
          f"conformal scale factor {trained.calibrator.q:.3f} (fit on the validation weeks)")
    projects = evaluate_projects(trained)
    print(f"project parameters {trained.project_fit.params if trained.project_fit else None}; completion-date MAE "
          f"(days) over {projects.n_projects} projects of the training history: {projects.mae_days}; "
          f"'on the deadline' baseline: {projects.deadline_mae_days}")
    print(f"ONNX files in {out} (deterministic graph max |onnx - torch| "
          f"{trained.exported.deterministic.max_abs_diff:.2e})")
    from services.timeline.milestone import MILESTONE_MODEL_NAME
    from services.timeline.milestone_train import register_and_promote_milestone, train_milestone

    milestone = train_milestone(history.events, history.milestones, trained.versioned(), trained.split.val_start,
                                trained.split.test_start, out)
    print(f"milestone MAE days, validation {milestone.val}, held-out weeks {milestone.test}; "
          f"{'the model' if milestone.use_for_p50 else 'Monte-Carlo'} serves the milestone p50")
    if not args.no_register:
        registry = ModelRegistry(settings.models)
        print(f"{MODEL_NAME}: {register_and_promote_task_model(trained, registry, settings).summary()}")
        print(f"{MILESTONE_MODEL_NAME}: {register_and_promote_milestone(milestone, registry, settings).summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
