"""Timeline benchmark: remaining-duration forecasts on held-out simulated weeks (MAE, MAPE above a floor,
80% interval coverage) for the BiLSTM + MC-dropout model (conformally calibrated on the validation weeks)
and two baselines; project completion-date MAE at 25/50/75% of each project's life; PredictTask latency
over gRPC (loopback, in-memory state, the served MC graph).

    python -m bench timeline [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc.aio
import numpy as np
from sunday.ml.v1 import timeline_pb2, timeline_pb2_grpc

from bench._report import write_report
from mesh.config import MeshSettings
from services.timeline.dataset import ProjectProbe
from services.timeline.evaluate import project_quality
from services.timeline.predictor import StaticModel, TimelinePredictor
from services.timeline.server import binding
from services.timeline.train import MODEL_KEY, Options, SimData, Trained, simulated_dataset, train_all

MODELS = (MODEL_KEY, "baseline_type_median", "baseline_assignee_median")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


async def _grpc_latency(trained: Trained, probe: ProjectProbe, n: int, warm: int) -> list[float]:
    from mesh.serving import build_server

    store = probe.store
    tasks = [t for key, rows in store.rows.items() if key[1] == "tasks" for t in rows.values() if t.is_open]
    tenant = probe.tenant_id
    ids = [t.task_id for t in tasks if (tenant, "tasks") in store.rows and t.task_id in store.rows[(tenant, "tasks")]]
    predictor = TimelinePredictor(store, StaticModel(trained.versioned()))
    server = build_server([binding(predictor)], MeshSettings(), 0, host="127.0.0.1")
    await server.start()
    out: list[float] = []
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = timeline_pb2_grpc.TimelineServiceStub(channel)
            for i in range(n + warm):
                request = timeline_pb2.PredictTaskRequest(tenant_id=tenant, task_id=ids[i % len(ids)])
                start = time.perf_counter()
                await stub.PredictTask(request)
                if i >= warm:
                    out.append(time.perf_counter() - start)
    finally:
        await server.stop(0)
    return out


def _plot(task: dict[str, dict[str, float]], project: dict[str, float], deadline: dict[str, float]
          ) -> Callable[[Any], None]:
    def draw(fig: Any) -> None:
        ax = fig.add_subplot(1, 2, 1)
        names = list(task)
        ax.bar(np.arange(len(names)), [task[n]["mae_hours"] for n in names])
        ax.set_xticks(np.arange(len(names)), [n.replace("baseline_", "b:") for n in names], rotation=15)
        for i, n in enumerate(names):
            ax.annotate(f"cov80 {task[n]['coverage_80']:.2f}", (i, task[n]["mae_hours"]), ha="center", va="bottom")
        ax.set_ylabel("MAE of remaining hours (held-out weeks)")
        ax2 = fig.add_subplot(1, 2, 2)
        keys = list(project)
        pos = np.arange(len(keys))
        ax2.bar(pos - 0.2, [project[k] for k in keys], 0.4, label="Monte-Carlo over open tasks")
        ax2.bar(pos + 0.2, [deadline.get(k, np.nan) for k in keys], 0.4, label="current deadline")
        ax2.set_xticks(pos, [f"{k} through" for k in keys])
        ax2.set_ylabel("project completion-date MAE (days)")
        ax2.legend()
    return draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench timeline", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller world and fewer epochs (< 2 min)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    data = SimData(tenants=2, users_per_tenant=20, weeks=12) if args.quick else SimData()
    options = Options(epochs=25, patience=5) if args.quick else Options()
    started = time.perf_counter()
    trained = train_all(simulated_dataset(data), Path(tempfile.mkdtemp(prefix="bench-timeline-")), options)
    projects = project_quality(trained.dataset.probes, trained.versioned(), 1000 if args.quick else 4000)
    latency = asyncio.run(_grpc_latency(trained, trained.dataset.probes[-1], 100 if args.quick else 400, 10))
    p50, p99 = _percentiles(latency)
    task = {k: {"mae_hours": q.mae_hours, "mape": q.mape, "coverage_80": q.coverage_80, "n": q.n}
            for k, q in trained.test.items() if k in MODELS}
    payload = {
        "task": task,
        "project": {f"completion_mae_days_at_{k.rstrip('%')}": v for k, v in projects.mae_days.items()},
        "project_baseline_deadline": {f"completion_mae_days_at_{k.rstrip('%')}": v
                                      for k, v in projects.deadline_mae_days.items()},
        "project_count": projects.n_projects,
        "latency_ms": {"predict_task_grpc_p50": p50, "predict_task_grpc_p99": p99},
        "calibration": {"raw_mc_dropout_val_coverage_80": trained.raw_val_coverage,
                        "conformal_scale_q": trained.calibrator.q},
        "config": {"quick": args.quick, "sim": vars(data),
                   "test_weeks_from": trained.split.test_start.isoformat(), "seconds": time.perf_counter() - started},
    }
    rows = [{"model": k, "MAE h": v["mae_hours"], "MAPE": v["mape"], "cov80": v["coverage_80"]}
            for k, v in task.items()]
    write_report(args.out, "timeline", payload, rows, ("model", "MAE h", "MAPE", "cov80"),
                 _plot(task, projects.mae_days, projects.deadline_mae_days))
    print(f"project completion-date MAE (days, {projects.n_projects} projects): {projects.mae_days}; "
          f"deadline baseline {projects.deadline_mae_days}")
    print(f"PredictTask over gRPC: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
