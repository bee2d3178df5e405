"""`python -m services.assignment.train`: events (a simulator run, or the offline event log with
`--from-event-log`) -> point-in-time dataset, replayed through the serving feature path -> time-ordered
split -> NN, LambdaMART, ensemble -> evaluation against the baselines -> verified ONNX -> MLflow
(`challenger`) -> promotion to `champion` only when the challenger beats the champion on validation."""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mesh.config import MeshSettings
from mesh.events import Envelope
from mesh.features import FeatureRepoConfig
from mesh.metrics import RankingQuality, ranking_quality, split_scores
from mesh.models import CHALLENGER, CHAMPION, INPUT_NAME, ModelRegistry, OnnxModel
from services.assignment.dataset import RankingSet, Split, build_dataset, events_from_log, split_by_week
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
from services.assignment.ranker import MODEL_NAME
from simulator import SimConfig, Simulation

log = logging.getLogger(__name__)
REGISTERED = {"ensemble": MODEL_NAME, "nn": "assignment-nn", "lambdamart": "assignment-lambdamart"}
METRIC = "val_ndcg_at_5"
DEFAULT_SIM = SimConfig(tenants=2, users_per_tenant=30, weeks=8, seed=1)
"""The simulated world trained on by default."""


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
    return list(Simulation(config).events())


def scorers(net: RankerNet, booster: Any, ensemble: Ensemble) -> dict[str, Scorer]:
    nn_fn, lgb_fn = net_scorer(net), lambdamart_scorer(booster)
    return {"ensemble": lambda x: ensemble.combine(nn_fn(x), lgb_fn(x)), "nn": nn_fn, "lambdamart": lgb_fn,
            **baselines()}


def train_all(events: Iterable[Envelope], out_dir: Path, net_options: NetOptions | None = None,
              lgb_options: LambdaMartOptions | None = None) -> Trained:
    split = split_by_week(build_dataset(events))
    log.info("lists: train %d, val %d, test %d", len(split.train), len(split.val), len(split.test))
    net = train_net(split.train, split.val, net_options or NetOptions())
    booster = train_lambdamart(split.train, split.val, lgb_options or LambdaMartOptions())
    ensemble = fit_ensemble(net_scorer(net), lambdamart_scorer(booster), split.train, split.val)
    exported = export_all(net, booster, ensemble, split.val.x[:512], out_dir, split.train.x.mean(axis=0))
    fns = scorers(net, booster, ensemble)
    return Trained(split, net, booster, ensemble, exported,
                   {k: evaluate(f, split.test) for k, f in fns.items()},
                   {k: evaluate(f, split.val) for k, f in fns.items()})


def onnx_quality(path: Path, data: RankingSet, settings: MeshSettings) -> RankingQuality:
    model = OnnxModel.load(path, settings.models, warm_up=False)
    scores = np.asarray(model.run({INPUT_NAME: data.x})[model.output_names[0]]).reshape(-1)
    return ranking_quality(zip(split_scores(scores, data.sizes), data.relevant.tolist(), strict=True))


def register_and_promote(trained: Trained, registry: ModelRegistry, settings: MeshSettings) -> dict[str, str]:
    """Register each model as `challenger`; move `champion` to it only when it beats the current
    champion re-scored on this run's validation lists (a champion on another feature layout loses)."""
    paths = {"ensemble": trained.exported.ensemble.path, "nn": trained.exported.nn.path,
             "lambdamart": trained.exported.lambdamart.path}
    decisions: dict[str, str] = {}
    for kind, name in REGISTERED.items():
        val, test = trained.val[kind], trained.test[kind]
        metrics = {METRIC: val.ndcg_at_5, "val_mrr": val.mrr, "test_ndcg_at_5": test.ndcg_at_5, "test_mrr": test.mrr}
        params: dict[str, str | int | float | bool] = {"kind": kind, "train_lists": len(trained.split.train),
                                                       "ensemble_weight": trained.ensemble.weight}
        version = registry.log_and_register(name, paths[kind], metrics, params, trained.split.train.time_range(),
                                            alias=CHALLENGER)
        decisions[name] = _promote(registry, name, version, val.ndcg_at_5, trained.split.val, settings)
    return decisions


def _promote(registry: ModelRegistry, name: str, version: str, value: float, val: RankingSet,
             settings: MeshSettings) -> str:
    champion = registry.version_of(name, CHAMPION)
    champion_value = None
    if champion is not None:
        try:
            champion_value = onnx_quality(registry.local_path(name, champion), val, settings).ndcg_at_5
        except Exception as exc:  # a champion that cannot read this layout cannot be compared: it loses
            log.warning("champion %s v%s cannot be re-scored (%s)", name, champion, exc)
    if champion_value is not None and value <= champion_value:
        return f"v{version} kept as challenger: {METRIC} {value:.4f} <= champion v{champion} {champion_value:.4f}"
    registry.set_alias(name, CHAMPION, version)
    before = "none" if champion is None else f"v{champion} ({champion_value})"
    return f"v{version} promoted to champion: {METRIC} {value:.4f} (previous champion {before})"


def quality_table(quality: dict[str, RankingQuality]) -> str:
    lines = [f"{'model':<24}{'ndcg@5':>8}{'ndcg@10':>9}{'mrr':>8}"]
    lines += [f"{k:<24}{q.ndcg_at_5:>8.3f}{q.ndcg_at_10:>9.3f}{q.mrr:>8.3f}" for k, q in quality.items()]
    return "\n".join(lines)


def training_events(args: argparse.Namespace, settings: MeshSettings) -> list[Envelope]:
    """The events the dataset is built from: the offline event log when asked for, else a simulator run."""
    if args.from_event_log is None:
        return simulated_events(
            SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks, seed=args.seed))
    root = Path(args.from_event_log) if args.from_event_log else FeatureRepoConfig.from_settings(settings).event_log_dir
    events = events_from_log(root)
    if not events:
        raise SystemExit(f"no assignment events in the event log at {root}")
    log.info("%d events from the event log at %s", len(events), root)
    return events


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.assignment.train", description=__doc__)
    parser.add_argument("--from-event-log", nargs="?", const="", default=None, metavar="DIR",
                        help="build the dataset from the feature ingestor's offline event log (default DIR: "
                             "<features.offline_dir>/sunday_ml/events) instead of a simulator run")
    parser.add_argument("--tenants", type=int, default=DEFAULT_SIM.tenants)
    parser.add_argument("--users", type=int, default=DEFAULT_SIM.users_per_tenant)
    parser.add_argument("--weeks", type=int, default=DEFAULT_SIM.weeks)
    parser.add_argument("--seed", type=int, default=DEFAULT_SIM.seed)
    parser.add_argument("--out", type=Path, default=None, help="where the ONNX files go (default: a temp dir)")
    parser.add_argument("--no-register", action="store_true", help="train and evaluate only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = MeshSettings()
    out = args.out or Path(tempfile.mkdtemp(prefix="assignment-"))
    trained = train_all(training_events(args, settings), out)
    print(f"held-out week(s) from {trained.split.test_start:%Y-%m-%d}:\n{quality_table(trained.test)}")
    print(f"ensemble weight on nn: {trained.ensemble.weight:.2f}; ONNX files in {out}")
    if not args.no_register:
        for name, decision in register_and_promote(trained, ModelRegistry(settings.models), settings).items():
            print(f"{name}: {decision}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
