"""Train the policy model (ALS factors + people segments) from the offline event log or a simulator run,
evaluate ALS against popularity (leave-last-out views), and export it as ``.npz`` for the service.

    python -m services.personalization.train --source eventlog|simulator [--out DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from mesh.config import MeshSettings
from mesh.config._settings import CACHE_DIR
from mesh.events import Envelope, occurred_at
from mesh.features import InMemoryAggregates
from mesh.models._sources import add_training_arguments, logged_training_events, source_of
from services.personalization.factors import Interaction, PolicyModel, build_model, train_als
from services.personalization.ranking import Timed, evaluate
from services.personalization.state import PERSONALIZATION_REDUCERS, PersonState

log = logging.getLogger(__name__)


def train(events: list[Envelope], version: str, seed: int = 0) -> tuple[PolicyModel, dict[str, float]]:
    store = InMemoryAggregates(PERSONALIZATION_REDUCERS)
    store.apply(events)
    people = [s for k in store.keys(PersonState.kind)
              if (s := store.load(PersonState, *k.split(":", 2)[1:])) is not None]
    als = train_als((Interaction(f"{p.tenant_id}/{p.entity_id}", t, float(n)) for p in people
                     for t, n in p.task_views.items()), factors=32, seed=seed)
    views = [Timed(f"{env.tenant_id}/{env.task_viewed.user_id}", env.task_viewed.task_id, 1.0,
                   occurred_at(env).timestamp()) for env in events if env.type == "task_viewed"]
    quality: dict[str, float] = {}
    if views:
        result = evaluate(views, factors=32)
        quality = {f"recall@10_{m}": v for m, v in result.recall.items()}
        quality |= {f"ndcg@10_{m}": v for m, v in result.ndcg.items()}
    if als is not None:  # the service keys people by id within a tenant
        als = type(als)(tuple(u.split("/", 1)[1] for u in als.user_ids), als.item_ids, als.users, als.items)
    return build_model(version, als, people, k=4, seed=seed), quality


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_arguments(parser, tenants=1, users=40, weeks=3, seed=0)
    args = parser.parse_args(argv)
    settings = MeshSettings()
    if source_of(args) == "eventlog":
        events = logged_training_events(args, settings)
    else:
        from simulator import SimConfig, simulate

        events = list(simulate(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks,
                                         seed=args.seed)))
    version = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    model, quality = train(events, version, args.seed)
    log.info("ALS vs popularity (leave-last-out views): %s", quality)
    out = Path(args.out) if args.out is not None else CACHE_DIR / "personalization"
    out.mkdir(parents=True, exist_ok=True)
    tmp = model.save(out / "policy.next.npz")
    path = tmp.replace(out / "policy.npz")  # atomic: a serving process never reads half a file
    log.info("policy model %s written to %s", version, path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
