"""`python -m services.personalization.train [--source eventlog|simulator]`: the policy model (ALS factors +
people segments + each segment's cold-start vector) through the training skeleton of `mesh.models`:

1. events (the feature ingestor's offline event log, or a simulator run) split by time: train | validation
   period | held-out test period (:func:`mesh.models.time_split` over the events' times);
2. ALS (`implicit`) on the views of the train period, k-means segments of the people as of its end;
3. next-views quality of the model beside the popularity baseline on both periods
   (:func:`mesh.models.score_beside_baselines`): for each person with views in the period, recall@10 and
   NDCG@10 of the items they viewed there among the items known at training time, ranked by their ALS
   vector (a person ALS has not seen: their segment's cold-start vector);
4. the factors exported as a plain ``.npz`` (no training library needed to serve), registered in MLflow as
   ``challenger`` of ``personalization-policy``; ``champion`` moves to it only when its NDCG@10 beats the
   current champion's re-scored on THIS run's validation period (``ModelRegistry.promote_if_better(rescore=...)``).

The service follows ``champion`` (:func:`services.personalization.online.follow_registry`); a new champion
is a new policy version (new bandit statistics). `simulator` is imported only for `--source simulator`.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from mesh.config import MeshSettings
from mesh.events import TASK_TYPE_SLOTS, Envelope, occurred_at
from mesh.features import InMemoryAggregates
from mesh.models import (
    ModelRegistry,
    PromotionDecision,
    add_training_arguments,
    logged_training_events,
    score_beside_baselines,
    source_of,
    time_range,
    time_split,
)
from services.personalization.factors import (
    MODEL_NAME,
    POLICY_FILE,
    Interaction,
    PolicyModel,
    behaviour,
    build_model,
    train_als,
)
from services.personalization.state import PERSONALIZATION_REDUCERS, PersonState

log = logging.getLogger(__name__)

METRIC = "val_ndcg_at_10"
K = 10
DEFAULT_TENANTS, DEFAULT_USERS, DEFAULT_WEEKS, DEFAULT_SEED = 1, 40, 4, 0
VAL, TEST = timedelta(days=4), timedelta(days=4)


@dataclass(frozen=True)
class Period:
    """What a period is scored on: the people as of the end of training, and who viewed what in the period."""

    people: dict[str, PersonState]
    """``tenant/person`` -> state at the end of the training period"""
    viewed: dict[str, set[str]]
    """``tenant/person`` -> tasks viewed in the period"""


@dataclass(frozen=True)
class Quality:
    recall_at_10: float
    ndcg_at_10: float
    people: int


def _people(events: Sequence[Envelope]) -> dict[str, PersonState]:
    store = InMemoryAggregates(PERSONALIZATION_REDUCERS)
    store.apply(events)
    out = {}
    for key in store.keys(PersonState.kind):
        tenant, person = key.split(":", 2)[1:]
        state = store.load(PersonState, tenant, person)
        if state is not None:
            out[f"{tenant}/{person}"] = state
    return out


def _views(events: Sequence[Envelope]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for env in events:
        if env.type == "task_viewed":
            out.setdefault(f"{env.tenant_id}/{env.task_viewed.user_id}", set()).add(env.task_viewed.task_id)
    return out


def fit(events: Sequence[Envelope], version: str, seed: int = 0, factors: int = 32) -> PolicyModel:
    """ALS on the people's views (weighted by count) and segments of the people, from ``events``."""
    people = _people(events)
    als = train_als((Interaction(u, t, float(n)) for u, p in people.items() for t, n in p.task_views.items()),
                    factors=factors, seed=seed)
    return build_model(version, als, list(people.values()), k=4, seed=seed)


def _scored(scores: np.ndarray, items: Sequence[str], relevant: set[str]) -> tuple[float, float]:
    top = np.argsort(-scores, kind="stable")[:K]
    hits = [items[j] in relevant for j in top]
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(K, len(relevant))))
    dcg = sum(1.0 / math.log2(i + 2) for i, hit in enumerate(hits) if hit)
    return sum(hits) / min(K, len(relevant)), dcg / ideal


def quality(model: PolicyModel | None, period: Period, popularity: dict[str, float]) -> Quality:
    """Next-views quality on ``period`` of ``model``'s ALS ranking (None: the popularity baseline) over the
    items of ``popularity`` (the items known at training time). Items the period's people viewed that were
    unknown then are left out (neither ranker can name them)."""
    items = sorted(popularity)
    pop = np.array([popularity[t] for t in items])
    recall, ndcg, n = 0.0, 0.0, 0
    for who, viewed in sorted(period.viewed.items()):
        relevant = viewed & popularity.keys()
        if not relevant:
            continue
        scores = pop
        if model is not None and model.als is not None:
            person = period.people.get(who)
            vec = model.als.user_vector(who.split("/", 1)[1])
            if vec is None and person is not None:
                vec = model.cold_vector(model.segments.of(behaviour(person)))
            if vec is not None:  # else: nothing is known of the person, popularity is all either can do
                scores = model.als.scores(vec, items) + 1e-9 * pop / max(float(pop.max()), 1.0)
        r, g = _scored(scores, items, relevant)
        recall, ndcg, n = recall + r, ndcg + g, n + 1
    return Quality(recall / max(n, 1), ndcg / max(n, 1), n)


@dataclass(frozen=True)
class Trained:
    model: PolicyModel
    val: dict[str, Quality]
    test: dict[str, Quality]
    val_period: Period
    popularity: dict[str, float]
    data_time_range: tuple[datetime, datetime]
    train_events: int


def train(events: Sequence[Envelope], version: str, seed: int = 0, val: timedelta = VAL, test: timedelta = TEST
          ) -> Trained:
    """Steps 1-3 of the module doc."""
    events = sorted(events, key=occurred_at)
    times = [occurred_at(e) for e in events]
    split = time_split(times, val, test)
    train_events = [events[i] for i in split.train]
    model = fit(train_events, version, seed)
    people = _people(train_events)
    # tenant-qualified ids: the people ALS knows are keyed by id within the tenant
    model = _unqualified(model)
    popularity: dict[str, float] = {}
    for p in people.values():
        for t, n in p.task_views.items():
            popularity[t] = popularity.get(t, 0.0) + n
    periods = {name: Period(people, _views([events[i] for i in idx]))
               for name, idx in (("val", split.val), ("test", split.test))}
    held = score_beside_baselines({"policy": lambda p: quality(model, p, popularity)},
                                  {"popularity": lambda p: quality(None, p, popularity)},
                                  periods["val"], periods["test"])
    return Trained(model, held.val, held.test, periods["val"], popularity,
                   time_range([times[i] for i in split.train]), len(train_events))


def _unqualified(model: PolicyModel) -> PolicyModel:
    als = model.als
    if als is None:
        return model
    ids = tuple(u.split("/", 1)[1] for u in als.user_ids)
    return PolicyModel(model.version, type(als)(ids, als.item_ids, als.users, als.items), model.segments,
                       model.cold_users)


def metrics_of(trained: Trained) -> dict[str, float]:
    out = {METRIC: trained.val["policy"].ndcg_at_10}
    for period, scores in (("val", trained.val), ("test", trained.test)):
        for name, q in scores.items():
            out[f"{period}_recall_at_10_{name}"] = q.recall_at_10
            out[f"{period}_ndcg_at_10_{name}"] = q.ndcg_at_10
        out[f"{period}_people"] = float(scores["policy"].people)
    return out


def register_and_promote(trained: Trained, registry: ModelRegistry, out_dir: Path) -> PromotionDecision:
    """Step 4: the ``.npz`` as ``challenger``; ``champion`` only if it beats the champion re-scored on this
    run's validation period."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = trained.model.save(out_dir / POLICY_FILE)
    params: dict[str, str | int | float | bool] = {
        "policy_version": trained.model.version, "train_events": trained.train_events,
        "als_users": len(trained.model.als.user_ids) if trained.model.als else 0,
        "als_items": len(trained.model.als.item_ids) if trained.model.als else 0,
        "segments": len(trained.model.segments.centroids)}
    registry.log_and_register_file(MODEL_NAME, path, metrics_of(trained), params, trained.data_time_range)

    def rescore(version: str, local: Path) -> float:
        return quality(PolicyModel.load(local), trained.val_period, trained.popularity).ndcg_at_10

    return registry.promote_if_better(MODEL_NAME, METRIC, True, rescore=rescore, filename=POLICY_FILE)


def segment_report(trained: Trained) -> list[dict[str, object]]:
    """The segments' analytics: per segment, the people in it (as of the end of training, those with
    behaviour), what they look at (the task types with the largest share of their views, from the centroid),
    how much (views) and their click rate, and the policy's next-views NDCG@10 for them on the validation
    period beside popularity's (segments are the bandit's arms and the cold start of unseen people)."""
    model, period = trained.model, trained.val_period
    centroids = model.segments.centroids
    members: dict[int, list[str]] = {i: [] for i in range(len(centroids))}
    for who, person in period.people.items():
        if sum(person.type_views.values()):
            members[model.segments.of(behaviour(person))].append(who)
    rows: list[dict[str, object]] = []
    for i, c in enumerate(centroids):
        shares = c[:len(TASK_TYPE_SLOTS)]
        top = [f"{TASK_TYPE_SLOTS[j]} {shares[j]:.0%}" for j in np.argsort(-shares)[:2] if shares[j] > 0]
        sub = Period({w: period.people[w] for w in members[i]},
                     {w: v for w, v in period.viewed.items() if w in set(members[i])})
        rows.append({"segment": i, "people": len(members[i]), "looks_at": top,
                     "views": round(float(np.expm1(c[len(TASK_TYPE_SLOTS)] * 5.0)), 1),
                     "click_rate": round(float(c[len(TASK_TYPE_SLOTS) + 1]), 3),
                     "val_ndcg_at_10_policy": round(quality(model, sub, trained.popularity).ndcg_at_10, 3),
                     "val_ndcg_at_10_popularity": round(quality(None, sub, trained.popularity).ndcg_at_10, 3)})
    return rows


def table(trained: Trained) -> str:
    lines = [f"{'model':<12}{'val R@10':>10}{'val N@10':>10}{'test R@10':>11}{'test N@10':>11}"]
    for name in trained.val:
        v, t = trained.val[name], trained.test[name]
        lines.append(f"{name:<12}{v.recall_at_10:>10.3f}{v.ndcg_at_10:>10.3f}{t.recall_at_10:>11.3f}"
                     f"{t.ndcg_at_10:>11.3f}")
    return "\n".join(lines)


def training_events(args: argparse.Namespace, settings: MeshSettings) -> list[Envelope]:
    if source_of(args) == "eventlog":
        return logged_training_events(args, settings)
    from simulator import SimConfig, simulate

    return list(simulate(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks,
                                   seed=args.seed)))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(prog="python -m services.personalization.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser, tenants=DEFAULT_TENANTS, users=DEFAULT_USERS, weeks=DEFAULT_WEEKS,
                           seed=DEFAULT_SEED)
    args = parser.parse_args(argv)
    settings = MeshSettings()
    events = training_events(args, settings)
    log.info("%d events; split train | %s validation | %s test", len(events), VAL, TEST)
    try:
        trained = train(events, datetime.now(UTC).strftime("%Y%m%d%H%M%S"), args.seed)
    except ValueError as exc:
        raise SystemExit(f"cannot train the personalization policy: {exc}") from None
    print(table(trained), flush=True)
    print("segments (k-means over behaviour; the bandit's arms and the cold start):", flush=True)
    for row in segment_report(trained):
        print(f"  {row}", flush=True)
    if args.no_register:
        return 0
    out = Path(args.out) if args.out is not None else Path(tempfile.mkdtemp(prefix="personalization-"))
    out.mkdir(parents=True, exist_ok=True)
    decision = register_and_promote(trained, ModelRegistry(settings.models), out)
    print(f"{MODEL_NAME}: {decision.summary()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
