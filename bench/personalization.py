"""Personalization benchmark.

1. Closed loop in the simulated world: CTR (mean true click probability of the shown items) and cumulative
   regret vs the oracle, week by week, of the hybrid (LinUCB over ALS + content), LinUCB (content only),
   ALS, popularity, random and the oracle; goal: the hybrid closes >= half the popularity -> oracle gap.
2. Off-policy evaluation on the Open Bandit Dataset sample: bts's value estimated from the random logs by
   DM, IPW, SNIPS, DR, SNDR, Switch-DR and DR-os (reward model chosen by cross-validated log loss on the
   random logs; Switch-DR/DR-os tuned by SLOPE), relative error vs bts's on-policy value (with that
   value's standard error) beside OBP's published figures (goal: best <= 0.15); then our LinUCB's value
   (trained on the first half of the random logs) by every estimator.
3. Implicit-feedback ranking, leave-last-out by time: recall@10 / NDCG@10 of ALS vs popularity on the
   simulator's views, and on a MovieLens ``u.data`` when ``--data DIR`` holds one (not shipped).
4. Recommend latency p50/p99 over gRPC at 100 candidates, state in the real Redis.

    python -m bench personalization [--quick] [--data DIR] [--bandits DIR] --out DIR
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc.aio
import numpy as np

from bench._grpc import grpc_latency
from bench._report import write_report

BANDITS = Path(__file__).resolve().parents[2] / "shared" / "data" / "bandits"


def _closed_loop(quick: bool) -> dict[str, Any]:
    from services.personalization.simulate import LoopConfig, closed_loop, gap_closed

    cfg = LoopConfig(users=30, weeks=3) if quick else LoopConfig(users=40, weeks=6)
    runs = closed_loop(cfg, progress=lambda m: print(f"  {m}", flush=True))
    return {"config": {"users": cfg.users, "weeks": cfg.weeks, "warmup_weeks": cfg.warmup_weeks, "k": cfg.k,
                       "seed": cfg.seed, "linucb": asdict(cfg.linucb)},
            "policies": {n: {"ctr": r.ctr, "shown": r.shown, "clicks": r.clicks, "weekly_ctr": r.weekly_ctr,
                             "cumulative_regret": r.cumulative_regret} for n, r in runs.items()},
            "hybrid_gap_closed": gap_closed(runs), "goal_gap_closed": 0.5}


def _ope(bandits: Path, quick: bool) -> dict[str, Any]:
    from services.personalization.obd import PUBLISHED, evaluate_bts

    if not bandits.exists():
        return {"skipped": f"{bandits} not found"}
    result = evaluate_bts(bandits, n_runs=5 if quick else 30, progress=True)
    return {"truth_bts_on_policy": result.truth, "truth_standard_error": result.truth_se,
            "truth_standard_error_relative": result.truth_se / result.truth,
            "random_on_policy": result.random_value,
            "reward_model": {"chosen": result.model.label(), "criterion": "5-fold CV log loss on the random logs",
                             "cv_log_loss": result.choice.log_loss, "cv_brier": result.choice.brier},
            "relative_error_by_reward_model": {m: {n: {"mean": v[0], "std": v[1]} for n, v in errs.items()}
                                               for m, errs in result.by_model.items()},
            "best": result.best, "goal_best_relative_error": 0.15,
            "estimators": {n: {"relative_error_mean": m, "relative_error_std": s, "estimate": result.estimates[n],
                               "published_mean": PUBLISHED[n][0], "published_std": PUBLISHED[n][1]}
                           for n, (m, s) in result.relative_error.items()},
            "naive_random_mean_relative_error": abs(result.random_value - result.truth) / result.truth,
            "linucb": result.linucb, "bootstrap_runs": 5 if quick else 30}


def _ranking(data: Path | None, quick: bool) -> dict[str, Any]:
    from services.personalization.ranking import Timed, evaluate, read_movielens
    from simulator import SimConfig, simulate

    out: dict[str, Any] = {}
    sim = SimConfig(users_per_tenant=40, weeks=3 if quick else 6, seed=11)
    views = [Timed(env.task_viewed.user_id, env.task_viewed.task_id, 1.0, env.occurred_at.seconds)
             for env in simulate(sim) if env.type == "task_viewed"]
    r = evaluate(views, factors=32)
    out["simulator_views"] = {"users": r.users, "recall@10": r.recall, "ndcg@10": r.ndcg}
    path = data / "u.data" if data is not None else None
    if path is not None and path.exists():
        ml = evaluate(read_movielens(str(path)), factors=64)
        out["movielens"] = {"path": str(path), "users": ml.users, "recall@10": ml.recall, "ndcg@10": ml.ndcg}
    else:
        out["movielens"] = {"skipped": "pass --data DIR with a MovieLens u.data (not shipped: licence)"}
    return out


def _latency(quick: bool) -> dict[str, Any]:
    import redis
    from sunday.ml.v1 import events_pb2 as e
    from sunday.ml.v1 import personalization_pb2, personalization_pb2_grpc

    from mesh.config import MeshSettings
    from mesh.events import new_envelope
    from mesh.features import RedisAggregates
    from services.personalization.factors import PolicyModel, Segments
    from services.personalization.recommend import Recommender
    from services.personalization.server import binding
    from services.personalization.state import PERSONALIZATION_REDUCERS

    settings = MeshSettings()
    client = redis.Redis.from_url(settings.redis.url)
    store = RedisAggregates(client, f"bench_personalization_{uuid.uuid4().hex[:8]}",
                            reducers=PERSONALIZATION_REDUCERS)
    t0 = datetime(2026, 3, 2, tzinfo=UTC)

    def at(i: int) -> Any:
        return dict(producer="bench", occurred_at=t0 + timedelta(seconds=i))

    events = [new_envelope("bench", e.UserJoined(user_id="u0"), **at(0)),
              new_envelope("bench", e.ProjectCreated(project_id="p0", member_ids=["u0"]), **at(1))]
    events += [new_envelope("bench", e.TaskCreated(task_id=f"t{i}", project_id="p0", task_type="bug",
                                                   title=f"task {i}"), **at(2 + i)) for i in range(100)]
    events += [new_envelope("bench", e.TaskViewed(task_id=f"t{i % 37}", project_id="p0", user_id="u0"), **at(200 + i))
               for i in range(300)]
    try:
        store.apply(events)
        rec = Recommender(store, PolicyModel("bench", None, Segments(np.zeros((1, 11)))))
        n = 200 if quick else 1000

        async def call(channel: grpc.aio.Channel, i: int) -> None:
            stub = personalization_pb2_grpc.PersonalizationServiceStub(channel)
            reply = await stub.Recommend(personalization_pb2.RecommendRequest(
                tenant_id="bench", user_id="u0", k=5, request_id=str(i)))
            assert len(reply.prediction.candidate_ids) == 100

        samples = asyncio.run(grpc_latency([binding(rec)], call, n, 20))
    finally:
        store.clear()
        client.close()
    ms = np.asarray(samples) * 1000
    return {"candidates": 100, "calls": len(samples), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "note": "one process, loopback, shared 2-core machine"}


def _rows(payload: dict[str, Any]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    loop = payload["closed_loop"]["policies"]
    for name, r in loop.items():
        rows.append({"section": "closed loop", "name": name, "value": r["ctr"],
                     "extra": f"regret {r['cumulative_regret'][-1]:.1f}"})
    ope = payload["ope"]
    for name, r in ope.get("estimators", {}).items():
        rows.append({"section": "OPE bts<-random", "name": name, "value": r["relative_error_mean"],
                     "extra": f"published {r['published_mean']:.3f}"})
    if "linucb" in ope:
        rows.append({"section": "OPE LinUCB", "name": ope["best"], "value": ope["linucb"]["linucb"],
                     "extra": f"bts {ope['linucb']['bts']:.4f} random {ope['linucb']['random_on_policy']:.4f}"})
    for where in ("simulator_views", "movielens"):
        r = payload["ranking"][where]
        if "recall@10" in r:
            for m in ("als", "popularity"):
                rows.append({"section": f"ranking {where}", "name": m, "value": r["recall@10"][m],
                             "extra": f"ndcg@10 {r['ndcg@10'][m]:.3f}"})
    lat = payload["latency"]
    rows.append({"section": "Recommend gRPC", "name": "p50 ms", "value": lat["p50_ms"],
                 "extra": f"p99 {lat['p99_ms']:.1f}"})
    return rows


def _plot(payload: dict[str, Any]) -> Any:
    def draw(fig: Any) -> None:
        loop = payload["closed_loop"]["policies"]
        ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
        for name, r in loop.items():
            weeks = range(1, len(r["weekly_ctr"]) + 1)
            ax1.plot(weeks, r["weekly_ctr"], marker="o", label=name)
            ax2.plot(weeks, r["cumulative_regret"], marker="o", label=name)
        ax1.set(title="closed loop: CTR per week", xlabel="week", ylabel="CTR")
        ax2.set(title="cumulative regret vs oracle", xlabel="week", ylabel="expected clicks")
        ax1.legend(fontsize=8)
    return draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench personalization", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller world, 5 bootstraps (a few minutes)")
    parser.add_argument("--data", type=Path, default=None, help="a MovieLens-format folder with u.data")
    parser.add_argument("--bandits", type=Path, default=BANDITS, help="the Open Bandit Dataset sample")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    started = time.perf_counter()
    print("closed loop ...", flush=True)
    payload: dict[str, Any] = {"closed_loop": _closed_loop(args.quick)}
    print("off-policy evaluation ...", flush=True)
    payload["ope"] = _ope(args.bandits, args.quick)
    print("ranking ...", flush=True)
    payload["ranking"] = _ranking(args.data, args.quick)
    print("latency ...", flush=True)
    payload["latency"] = _latency(args.quick)
    payload["quick"] = args.quick
    payload["seconds"] = time.perf_counter() - started
    payload["machine"] = "shared 2-core machine, other helpers running"
    write_report(args.out, "personalization", payload, _rows(payload), ("section", "name", "value", "extra"),
                 _plot(payload))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
