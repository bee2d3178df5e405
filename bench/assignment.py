"""Assignment benchmark: ranking quality vs baselines on held-out simulated weeks, RankAssignees latency
(in process and over gRPC, 50 candidates, features read from the service's state in the real Redis, one
batched read per request), ONNX speedup.

    python -m bench assignment [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc.aio
import numpy as np
import torch
from sunday.ml.v1 import assignment_pb2, assignment_pb2_grpc

from bench._grpc import grpc_latency
from bench._report import write_report
from mesh.config import MeshSettings
from mesh.events import Envelope
from mesh.features import RedisAggregates
from mesh.metrics import RankingQuality, ranking_quality, split_scores
from mesh.models import INPUT_NAME, OnnxModel, StaticModel, VersionedModel
from services.assignment.candidates import DEFAULT_SHORTLIST, first_stage_of_rows
from services.assignment.dataset import RankingSet, build_dataset
from services.assignment.model import LambdaMartOptions, NetOptions
from services.assignment.online import OnlineFeatures
from services.assignment.ranker import MODEL_NAME, AssignmentRanker
from services.assignment.server import binding
from services.assignment.state import ASSIGNMENT_REDUCERS, StateStore
from services.assignment.train import Trained, simulated_events, train_all
from simulator import SimConfig

MODELS = ("ensemble", "nn", "lambdamart", "baseline_random", "baseline_least_loaded", "baseline_skill_match",
          "baseline_most_frequent")
CANDIDATES = 50
REAL_TENANT = 300
"""People of the real-size tenant: its quality lists and latency rank all of them."""


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _state_with(events: list[Envelope], settings: MeshSettings) -> StateStore:
    """The service's state in a namespace of its own in the local Redis, filled in batches (the live path)."""
    import redis

    store = RedisAggregates(redis.Redis.from_url(settings.redis.url), f"bench_assignment_{uuid.uuid4().hex[:8]}",
                            reducers=ASSIGNMENT_REDUCERS)
    for i in range(0, len(events), 500):
        store.apply(events[i: i + 500])
    return StateStore(store)


def _requests(state: StateStore, events: list[Envelope], n: int) -> list[tuple[str, str, list[str]]]:
    """Tasks of the tenant, each ranked against all its active people (no candidate list: what a real
    call asks)."""
    tenant = events[0].tenant_id
    people: list[str] = []
    tasks = [e.task_created.task_id for e in events if e.type == "task_created" and e.tenant_id == tenant]
    return [(tenant, tasks[-1 - i % min(len(tasks), 200)], people) for i in range(n)]


def latency(ranker: AssignmentRanker, requests: list[tuple[str, str, list[str]]], warm: int) -> dict[str, float]:
    for tenant, task, people in requests[:warm]:
        ranker.rank_assignees(tenant, task, people, 5)
    inproc: list[float] = []
    for tenant, task, people in requests:
        start = time.perf_counter()
        ranker.rank_assignees(tenant, task, people, 5)
        inproc.append(time.perf_counter() - start)
    grpc_samples = asyncio.run(_grpc_latency(ranker, requests, warm))
    p50, p99 = _percentiles(inproc)
    g50, g99 = _percentiles(grpc_samples)
    n = REAL_TENANT
    return {f"rank{n}_inproc_p50": p50, f"rank{n}_inproc_p99": p99, f"rank{n}_grpc_p50": g50, f"rank{n}_grpc_p99": g99}


async def _grpc_latency(ranker: AssignmentRanker, requests: list[tuple[str, str, list[str]]], warm: int) -> list[float]:
    calls = [*requests[:warm], *requests]

    async def call(channel: grpc.aio.Channel, i: int) -> Any:
        tenant, task, people = calls[i]
        return await assignment_pb2_grpc.AssignmentServiceStub(channel).RankAssignees(
            assignment_pb2.RankAssigneesRequest(tenant_id=tenant, task_id=task, candidate_ids=people, k=5))

    return await grpc_latency([binding(ranker)], call, len(requests), warm)


def _time_per_call(fn: Callable[[], Any], reps: int) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - start) / reps


def onnx_speedup(trained: Trained, settings: MeshSettings, reps: int) -> dict[str, dict[str, float]]:
    """native time / ONNX Runtime time, same process, same rows, one thread each (ORT runs with
    ``intra_op_threads``=1; OpenMP threads spinning on a busy machine would flatter ONNX)."""
    out: dict[str, dict[str, float]] = {}
    torch.set_num_threads(1)
    x = trained.split.test.x
    natives: dict[str, Callable[[np.ndarray], Any]] = {
        "nn": lambda rows: trained.net(torch.from_numpy(rows)),
        "lambdamart": lambda rows: trained.booster.predict(rows, num_iteration=trained.booster.best_iteration or None,
                                                     num_threads=1),
    }
    paths = {"nn": trained.exported.nn.path, "lambdamart": trained.exported.lambdamart.path}
    with torch.no_grad():
        for kind, native in natives.items():
            model = OnnxModel.load(paths[kind], settings.models)
            out[kind] = {}
            for batch in (1, 64):
                rows = np.ascontiguousarray(x[:batch])
                t_native = _time_per_call(lambda r=rows, f=native: f(r), reps)  # type: ignore[misc]
                t_onnx = _time_per_call(lambda r=rows, m=model: m.run({INPUT_NAME: r}), reps)  # type: ignore[misc]
                out[kind][f"batch{batch}"] = t_native / t_onnx
    return out


def two_stage(scores: np.ndarray, data: RankingSet, n: int) -> tuple[RankingQuality, float]:
    """Quality when the models only see each list's first-stage shortlist of ``n`` (the rest ranked after
    it, tied), and the shortlist's recall of the true assignee."""
    first = first_stage_of_rows(data.x)
    out, hits = [], 0
    for a, b, relevant in zip(data.offsets[:-1], data.offsets[1:], data.relevant, strict=True):
        kept = np.argsort(-first[a:b], kind="stable")[:n]
        ranked = np.full(b - a, -1e9)
        ranked[kept] = scores[a:b][kept]
        hits += int(relevant in kept)
        out.append((ranked, int(relevant)))
    return ranking_quality(out), hits / len(data)


def stage_quality(path: Path, data: RankingSet, settings: MeshSettings, n: int) -> dict[str, dict[str, float]]:
    """The served ensemble on ``data``: every candidate scored vs the first stage's shortlist only."""
    model = OnnxModel.load(path, settings.models, warm_up=False)
    scores = np.asarray(model.run({INPUT_NAME: data.x})["score"], np.float64).reshape(-1)
    full = ranking_quality(zip(split_scores(scores, data.sizes), data.relevant.tolist(), strict=True))
    staged, recall = two_stage(scores, data, n)
    return {"ensemble": full.as_dict(), f"ensemble_first_stage_{n}": {**staged.as_dict(), "recall": recall}}


def _plot(quality: dict[str, dict[str, float]]) -> Callable[[Any], None]:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 1, 1)
        names = list(quality)
        pos = np.arange(len(names))
        for i, metric in enumerate(("ndcg@5", "ndcg@10", "mrr")):
            ax.bar(pos + (i - 1) * 0.27, [quality[n][metric] for n in names], 0.27, label=metric)
        ax.set_xticks(pos, [n.replace("baseline_", "b:") for n in names], rotation=20)
        ax.set_title("Assignee ranking on held-out simulated weeks (relevant = true assignee)")
        ax.legend()
    return draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench assignment", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller world and fewer calls (< 2 min)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    settings = MeshSettings()
    data = SimConfig(tenants=2 if args.quick else 3, users_per_tenant=CANDIDATES, weeks=5 if args.quick else 10,
                     seed=11)
    events = simulated_events(data)
    trained = train_all(events, Path(tempfile.mkdtemp(prefix="bench-assignment-")),
                        NetOptions(epochs=8 if args.quick else 30),
                        LambdaMartOptions(n_estimators=150 if args.quick else 400))
    quality = {k: trained.test[k].as_dict() for k in MODELS}
    staged = stage_quality(trained.exported.ensemble.path, trained.split.test, settings, DEFAULT_SHORTLIST)
    quality.update({k: v for k, v in staged.items() if k != "ensemble"})
    tenant_events = simulated_events(SimConfig(tenants=1, users_per_tenant=REAL_TENANT, weeks=1 if args.quick else 2,
                                               seed=7))
    real = build_dataset(tenant_events)
    real_quality = stage_quality(trained.exported.ensemble.path, real, settings, DEFAULT_SHORTLIST)
    print(f"real-size tenant ({REAL_TENANT} people, {len(real)} lists, median {int(np.median(real.sizes))} "
          f"candidates): " + "; ".join(f"{k}: " + " ".join(f"{m}={v:.3f}" for m, v in q.items())
                                       for k, q in real_quality.items()))
    state = _state_with(tenant_events, settings)
    model = StaticModel(VersionedModel(MODEL_NAME, "bench", OnnxModel.load(trained.exported.ensemble.path,
                                                                            settings.models)))
    calls = 300 if args.quick else 2000
    try:
        lat = latency(AssignmentRanker(state, OnlineFeatures(state), model), _requests(state, tenant_events, calls),
                      warm=50 if args.quick else 200)
    finally:
        state.store.clear()
    speedup = onnx_speedup(trained, settings, reps=200 if args.quick else 2000)
    rows = [{"model": k, **v} for k, v in quality.items()]
    print(f"{len(trained.split.test)} held-out lists from {trained.split.test_start:%Y-%m-%d}; "
          f"{calls} calls per latency (closed loop, {REAL_TENANT}-person tenant)")
    print(" ".join(f"{k}={v:.2f}ms" for k, v in lat.items()))
    print(" ".join(f"{k}@{b}={s:.1f}x" for k, d in speedup.items() for b, s in d.items()))
    payload = {"quality": quality, "real_tenant_quality": real_quality, "shortlist": DEFAULT_SHORTLIST,
               "latency_ms_closed_loop": lat, "onnx_speedup": speedup}
    write_report(args.out, "assignment", payload, rows, ["model", "ndcg@5", "ndcg@10", "mrr", "recall"],
                 _plot(quality))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
