"""Timeline benchmark: remaining-duration forecasts on held-out simulated weeks (MAE, MAPE above a floor,
80% interval coverage) for the BiLSTM + MC-dropout model (conformally calibrated on the validation weeks)
and two baselines; project completion-date MAE at 25/50/75% of each project's life; PredictTask latency
over gRPC (loopback, in-memory state, the served MC graph); the event handler's cost per input event, fed one
event at a time and in batches.

    python -m bench timeline [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import grpc.aio
import numpy as np
from sunday.ml.v1 import timeline_pb2, timeline_pb2_grpc

from bench._grpc import grpc_latency
from bench._report import write_report
from mesh.bus import InMemoryBroker, Publisher
from mesh.events import TopicRegistry
from mesh.models import StaticModel, VersionedModel
from services.timeline.dataset import ProjectProbe
from services.timeline.effort_prior import ConstantPrior, load_effort_prior
from services.timeline.evaluate import ProjectQuality, TaskQuality
from services.timeline.handlers import in_memory_handler
from services.timeline.predictor import TimelinePredictor
from services.timeline.projection import NAIVE
from services.timeline.server import binding
from services.timeline.state import EVENT_TYPES, TaskState
from services.timeline.train import (
    MODEL_KEY,
    Options,
    Trained,
    default_sim,
    evaluate_projects,
    simulated_dataset,
    train_all,
)
from simulator import SimConfig

MODELS = (MODEL_KEY, "baseline_type_median", "baseline_assignee_median")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ms = np.asarray(samples) * 1000.0
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


async def _grpc_latency(trained: Trained, probe: ProjectProbe, n: int, warm: int) -> list[float]:
    store = probe.store
    tenant = probe.tenant_id
    ids = [t.task_id for t in store.tasks(tenant, [key.split(":", 2)[2] for key in store.store.keys(TaskState.kind)
                                                   if key.split(":", 2)[1] == tenant]) if t.is_open]
    predictor = TimelinePredictor(store, StaticModel(trained.versioned()), effort=trained.effort)

    async def call(channel: grpc.aio.Channel, i: int) -> Any:
        request = timeline_pb2.PredictTaskRequest(tenant_id=tenant, task_id=ids[i % len(ids)])
        return await timeline_pb2_grpc.TimelineServiceStub(channel).PredictTask(request)

    return await grpc_latency([binding(predictor)], call, n, warm)


HANDLER_WORLD = SimConfig(tenants=1, users_per_tenant=20, weeks=6, seed=5)
HANDLER_BATCHES = (1, 20, 200)


def handler_cost(model: VersionedModel, events: int, simulations: int = 2000) -> dict[str, Any]:
    """The event handler's cost per input event (in memory: the handler's own work, no Redis or Kafka) on
    the same slice of a simulated stream, fed one event at a time and in batches: what batching the
    forecasts (one model run and one simulation per project per batch) buys."""
    from simulator import Simulation

    stream = [env for env in Simulation(HANDLER_WORLD).events() if env.type in EVENT_TYPES]
    warm, timed = stream[: len(stream) // 2], stream[len(stream) // 2:][:events]
    out: dict[str, Any] = {"events": len(timed), "simulations": simulations, "world": _world(HANDLER_WORLD),
                           "note": "in-memory state; the second half of the world's stream after the first half"}
    for size in HANDLER_BATCHES:
        handler = in_memory_handler(StaticModel(model), Publisher(InMemoryBroker().producer(), TopicRegistry()),
                                    simulations=simulations)
        for i in range(0, len(warm), 200):
            handler(warm[i:i + 200])
        started = time.perf_counter()
        for i in range(0, len(timed), size):
            handler(timed[i:i + size])
        out[f"ms_per_event_batch_{size}"] = 1000.0 * (time.perf_counter() - started) / max(len(timed), 1)
    return out


def _plot(task: dict[str, dict[str, float]], project: dict[str, float], deadline: dict[str, float],
          naive: dict[str, float]) -> Callable[[Any], None]:
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
        ax2.bar(pos - 0.27, [project[k] for k in keys], 0.27, label="Monte-Carlo + scope + blend")
        ax2.bar(pos, [naive.get(k, np.nan) for k in keys], 0.27, label="open tasks only, independent")
        ax2.bar(pos + 0.27, [deadline.get(k, np.nan) for k in keys], 0.27, label="current deadline")
        ax2.set_xticks(pos, [f"{k} through" for k in keys])
        ax2.set_ylabel("project completion-date MAE (days)")
        ax2.legend()
    return draw


def _project_rows(q: ProjectQuality) -> dict[str, float]:
    return {f"completion_mae_days_at_{k.rstrip('%')}": v for k, v in q.mae_days.items()}


def _task_rows(quality: dict[str, TaskQuality]) -> dict[str, dict[str, float]]:
    return {k: {"mae_hours": q.mae_hours, "mape": q.mape, "coverage_80": q.coverage_80, "n": q.n}
            for k, q in quality.items() if k in MODELS}


def _effort_ablation(data: SimConfig, options: Options, without: Trained) -> dict[str, Any]:
    """The same training with the effort prior as a feature (predicted story points from the task text):
    held-out-week MAE with vs without. Reported only; the served default stays without (see the report)."""
    effort = load_effort_prior()
    out: dict[str, Any] = {"prior": effort.name}
    if isinstance(effort, ConstantPrior):
        out["skipped"] = "no story-point data: the prior is a constant, nothing to compare"
        return out
    with_prior = train_all(simulated_dataset(data, effort), Path(tempfile.mkdtemp(prefix="bench-timeline-")),
                           options, effort)
    for key, t in (("with_effort_prior", with_prior), ("without", without)):
        out[key] = {"val_mae_hours": t.val[MODEL_KEY].mae_hours, "test_mae_hours": t.test[MODEL_KEY].mae_hours,
                    "test_mape": t.test[MODEL_KEY].mape, "test_coverage_80": t.test[MODEL_KEY].coverage_80}
    return out


def _milestone(data: SimConfig, trained: Trained) -> dict[str, Any]:
    """The milestone model vs the served Monte-Carlo p50 vs the due date on the held-out weeks' daily probes
    of the training world (labels: the simulator's milestone completion times)."""
    from services.timeline.milestone_train import train_milestone
    from services.timeline.train import simulated_history

    history = simulated_history(data)
    m = train_milestone(history.events, history.milestones, trained.versioned(), trained.split.val_start,
                        trained.split.test_start,
                        Path(tempfile.mkdtemp(prefix="bench-milestone-")))
    test = m.split.test
    return {"model_mae_days": m.test["model"], "montecarlo_mae_days": m.test["montecarlo"],
            "due_date_mae_days": m.test["due_date"], "n": m.n_test,
            "milestones": len(set(test.keys)), "mean_true_days": float(test.days().mean()) if len(test) else None,
            "validation": m.val, "served_p50": "model" if m.use_for_p50 else "montecarlo",
            "note": "daily probes of open milestones in the held-out weeks; labels are the simulator's completion "
                    "times (milestones without one give no probe)"}


def _world(c: SimConfig) -> dict[str, int]:
    return {"tenants": c.tenants, "users_per_tenant": c.users_per_tenant, "weeks": c.weeks, "seed": c.seed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench timeline", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller world and fewer epochs (< 2 min)")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    parser.add_argument("--effort-ablation", action="store_true",
                        help="also train with the story-point effort prior as a feature and report both")
    args = parser.parse_args(argv)
    data = SimConfig(tenants=2, users_per_tenant=20, weeks=12, seed=1) if args.quick else default_sim()
    # Project forecasts: parameters chosen on one unseen world, reported on another (every week of both is
    # out of sample for the task model; neither is the training world's held-out weeks).
    tenants = 4 if args.quick else 8
    val_world = replace(data, tenants=tenants, seed=data.seed + 100)
    test_world = replace(data, tenants=tenants, seed=data.seed + 200)
    options = Options(epochs=25, patience=5) if args.quick else Options()
    sims = 1000 if args.quick else 4000
    started = time.perf_counter()
    val_probes = list(simulated_dataset(val_world, samples=False).probes)
    test_probes = list(simulated_dataset(test_world, samples=False).probes)
    trained = train_all(simulated_dataset(data), Path(tempfile.mkdtemp(prefix="bench-timeline-")), options,
                        project_val=val_probes)
    milestone = _milestone(data, trained)
    effort_report = (_effort_ablation(data, options, trained) if args.effort_ablation
                     else {"skipped": "run with --effort-ablation"})
    projects = evaluate_projects(trained, test_probes, sims)
    naive = evaluate_projects(trained, test_probes, sims, NAIVE)
    own = evaluate_projects(trained, None, sims)
    own_naive = evaluate_projects(trained, None, sims, NAIVE)
    latency = asyncio.run(_grpc_latency(trained, trained.dataset.probes[-1], 100 if args.quick else 400, 10))
    p50, p99 = _percentiles(latency)
    handler = handler_cost(trained.versioned(), 200 if args.quick else 1000)
    task = _task_rows(trained.test)
    fit = trained.project_fit
    payload = {
        "task": task,
        "project": _project_rows(projects),
        "project_baseline_deadline": _project_rows(projects),
        "project_naive_open_tasks_only": _project_rows(naive),
        "project_count": projects.n_projects,
        "project_probes": projects.n_probes,
        "project_params": None if fit is None else {**asdict(fit.params), "val_mae_days": fit.mae_days,
                                                    "val_probes": len(val_probes)},
        "project_training_world": {"model": _project_rows(own), "naive": _project_rows(own_naive),
                                   "deadline": {k: v for k, v in own.deadline_mae_days.items()},
                                   "count": own.n_projects, "note": "probes inside the task model's training weeks"},
        "milestone": milestone,
        "effort_prior": effort_report,
        "latency_ms": {"predict_task_grpc_p50": p50, "predict_task_grpc_p99": p99},
        "handler": handler,
        "calibration": {"raw_mc_dropout_val_coverage_80": trained.raw_val_coverage,
                        "conformal_scale_q": trained.calibrator.q},
        "config": {"quick": args.quick, "sim": _world(data), "project_val_world": _world(val_world),
                   "project_test_world": _world(test_world),
                   "test_weeks_from": trained.split.test_start.isoformat(), "seconds": time.perf_counter() - started},
    }
    payload["project_baseline_deadline"] = {f"completion_mae_days_at_{k.rstrip('%')}": v
                                            for k, v in projects.deadline_mae_days.items()}
    rows = [{"model": k, "MAE h": v["mae_hours"], "MAPE": v["mape"], "cov80": v["coverage_80"]}
            for k, v in task.items()]
    write_report(args.out, "timeline", payload, rows, ("model", "MAE h", "MAPE", "cov80"),
                 _plot(task, projects.mae_days, projects.deadline_mae_days, naive.mae_days))
    print(f"project completion-date MAE (days; {projects.n_projects} projects of an unseen world, probes "
          f"{projects.n_probes}): model {_fmt(projects.mae_days)}; open tasks only {_fmt(naive.mae_days)}; "
          f"deadline baseline {_fmt(projects.deadline_mae_days)}; parameters {fit.params if fit else None}")
    print(f"milestone remaining-days MAE on held-out weeks: {milestone}")
    print(f"effort prior: {effort_report}")
    print(f"PredictTask over gRPC: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print("event handler, ms per input event: " + ", ".join(
        f"batch {n}: {handler[f'ms_per_event_batch_{n}']:.1f}" for n in HANDLER_BATCHES))
    return 0


def _fmt(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1f}" for k, v in d.items())


if __name__ == "__main__":
    raise SystemExit(main())
