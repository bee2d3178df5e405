"""`python -m services.assignment.train [--source eventlog|simulator]`: events (the feature ingestor's
offline event log, or a simulator run) -> point-in-time dataset, replayed through the serving feature
path -> the training skeleton of `mesh.models`: time-ordered split (train | validation week | held-out
week) -> NN, LambdaMART, ensemble, scored beside the baselines -> verified ONNX -> MLflow (`challenger`)
-> `champion` only when the challenger beats the champion re-scored on this run's validation week.

`simulator` is imported only for `--source simulator`: a deployed image trains from the event log."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mesh.config import MeshSettings
from mesh.events import Envelope
from mesh.metrics import RankingQuality, ranking_quality, split_scores
from mesh.mlops import build_reference
from mesh.models import (
    INPUT_NAME,
    Challenger,
    ModelRegistry,
    Objective,
    OnnxModel,
    PromotionDecision,
    add_training_arguments,
    logged_training_events,
    output_dir,
    register_and_promote,
    score_beside_baselines,
    source_of,
)
from services.assignment.dataset import RankingSet, Split, build_dataset, split_by_week
from services.assignment.export import Exported, export_all
from services.assignment.model import (
    Ensemble,
    LambdaMartOptions,
    NetOptions,
    RankerNet,
    Scorer,
    baselines,
    evaluate,
    fit_ensemble,
    lambdamart_scorer,
    net_scorer,
    train_lambdamart,
    train_net,
)
from services.assignment.ranker import MODEL_NAME, SCHEMA
from services.assignment.state import EVENT_TYPES

if TYPE_CHECKING:
    from simulator import SimConfig

log = logging.getLogger(__name__)
REGISTERED = {"ensemble": MODEL_NAME, "nn": "assignment-nn", "lambdamart": "assignment-lambdamart"}
METRIC = "val_ndcg_at_5"
REFERENCE_ROWS = 5000
"""training rows summarised into the drift reference stored with each version"""
DEFAULT_TENANTS, DEFAULT_USERS, DEFAULT_WEEKS, DEFAULT_SEED = 2, 30, 8, 1
"""The simulated world trained on by default (``--source simulator``)."""


@dataclass(frozen=True)
class Trained:
    split: Split
    net: RankerNet
    booster: Any
    ensemble: Ensemble
    exported: Exported
    test: dict[str, RankingQuality]
    val: dict[str, RankingQuality]


def simulated_events(config: SimConfig) -> list[Envelope]:
    from simulator import Simulation

    return list(Simulation(config).events())


def scorers(net: RankerNet, booster: Any, ensemble: Ensemble) -> dict[str, Scorer]:
    """The three models by kind (the keys of :data:`REGISTERED`)."""
    nn_fn, lgb_fn = net_scorer(net), lambdamart_scorer(booster)
    return {"ensemble": lambda x: ensemble.combine(nn_fn(x), lgb_fn(x)), "nn": nn_fn, "lambdamart": lgb_fn}


def train_all(events: Iterable[Envelope], out_dir: Path, net_options: NetOptions | None = None,
              lgb_options: LambdaMartOptions | None = None) -> Trained:
    split = split_by_week(build_dataset(events))
    log.info("lists: train %d, val %d, test %d", len(split.train), len(split.val), len(split.test))
    net = train_net(split.train, split.val, net_options or NetOptions())
    booster = train_lambdamart(split.train, split.val, lgb_options or LambdaMartOptions())
    ensemble = fit_ensemble(net_scorer(net), lambdamart_scorer(booster), split.train, split.val)
    exported = export_all(net, booster, ensemble, split.val.x[:512], out_dir, split.train.x.mean(axis=0))
    held = score_beside_baselines(_quality_of(scorers(net, booster, ensemble)), _quality_of(baselines()),
                                  split.val, split.test)
    return Trained(split, net, booster, ensemble, exported, held.test, held.val)


def _quality_of(fns: dict[str, Scorer]) -> dict[str, Any]:
    return {k: (lambda data, f=f: evaluate(f, data)) for k, f in fns.items()}


def onnx_quality(model: OnnxModel, data: RankingSet) -> RankingQuality:
    """Ranking quality of an ONNX ranker (the served graph) on ``data``."""
    scores = np.asarray(model.run({INPUT_NAME: data.x})[model.output_names[0]]).reshape(-1)
    return ranking_quality(zip(split_scores(scores, data.sizes), data.relevant.tolist(), strict=True))


def register_and_promote_all(trained: Trained, registry: ModelRegistry, settings: MeshSettings
                             ) -> dict[str, PromotionDecision]:
    """Each model as `challenger`, promoted by `mesh.models.register_and_promote` on this run's validation
    lists (NDCG@5 of the ONNX graphs, the champion's re-scored on the same lists)."""
    paths = {"ensemble": trained.exported.ensemble.path, "nn": trained.exported.nn.path,
             "lambdamart": trained.exported.lambdamart.path}
    objective = Objective(METRIC, True, lambda version: onnx_quality(version.model, trained.split.val).ndcg_at_5)
    fns = scorers(trained.net, trained.booster, trained.ensemble)
    sample = trained.split.train.x[np.random.default_rng(0).permutation(len(trained.split.train.x))[:REFERENCE_ROWS]]
    decisions: dict[str, PromotionDecision] = {}
    for kind, name in REGISTERED.items():
        val, test = trained.val[kind], trained.test[kind]
        metrics = {METRIC: val.ndcg_at_5, "val_mrr": val.mrr, "test_ndcg_at_5": test.ndcg_at_5, "test_mrr": test.mrr,
                   **{f"test_ndcg_at_5_{k}": q.ndcg_at_5 for k, q in trained.test.items() if k.startswith("baseline")}}
        params: dict[str, str | int | float | bool] = {"kind": kind, "train_lists": len(trained.split.train),
                                                       "ensemble_weight": trained.ensemble.weight}
        # the training distribution of the inputs and of this model's scores: what serving drift is measured against
        reference = build_reference(sample, SCHEMA.names, fns[kind](sample)).to_json()
        challenger = Challenger(name, paths[kind], SCHEMA, metrics, params, trained.split.train.time_range(),
                                reference=reference)
        decisions[name] = register_and_promote(registry, challenger, objective, settings.models)
    return decisions


def quality_table(quality: dict[str, RankingQuality]) -> str:
    lines = [f"{'model':<24}{'ndcg@5':>8}{'ndcg@10':>9}{'mrr':>8}"]
    lines += [f"{k:<24}{q.ndcg_at_5:>8.3f}{q.ndcg_at_10:>9.3f}{q.mrr:>8.3f}" for k, q in quality.items()]
    return "\n".join(lines)


def training_events(args: argparse.Namespace, settings: MeshSettings) -> list[Envelope]:
    """The events the dataset is built from: the offline event log, or a simulator run."""
    if source_of(args) == "eventlog":
        return logged_training_events(args, settings, EVENT_TYPES)
    from simulator import SimConfig

    return simulated_events(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks,
                                      seed=args.seed))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.assignment.train", description=__doc__)
    add_training_arguments(parser, tenants=DEFAULT_TENANTS, users=DEFAULT_USERS, weeks=DEFAULT_WEEKS,
                           seed=DEFAULT_SEED)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = MeshSettings()
    out = output_dir(args, "assignment-")
    trained = train_all(training_events(args, settings), out)
    print(f"held-out week(s) from {trained.split.test_start:%Y-%m-%d}:\n{quality_table(trained.test)}")
    print(f"ensemble weight on nn: {trained.ensemble.weight:.2f}; ONNX files in {out}")
    if not args.no_register:
        for name, decision in register_and_promote_all(trained, ModelRegistry(settings.models), settings).items():
            print(f"{name}: {decision.summary()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
