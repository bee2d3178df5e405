"""`python -m bench automation [--quick] [--data DIR] --out DIR`: the automation capability.

1. Next-activity prediction on a real process log (default ``../shared/data/process_logs``: the Helpdesk
   log; any folder or file of the ``CaseID,ActivityID,CompleteTimestamp`` format with ``--data``):
   accuracy on the last third of cases by time (hyper-parameters chosen on the validation slice of the
   first two thirds), beside the most-frequent-next-activity baseline and Tax et al. (CAiSE 2017), 0.712.
2. Planted workflows in the simulated world: recall and precision of the suggestions (miner AND model AND
   validation), beside the miner alone and a frequent-bigram baseline.
3. Safety: deliberately unsafe candidates (cycles, over-broad, missing permission, cross-project,
   cross-tenant) — the share rejected with the right reason — the planted workflows' false rejections,
   and validation latency including the dry run over four weeks of one tenant.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sunday.ml.v1 import events_pb2 as pb

from bench._report import write_report
from mesh.events import new_envelope
from services.automation import nets
from services.automation.demo import score, truth_key
from services.automation.engine import propose, record_of, suggestion_envelope
from services.automation.miner import MinedPattern, bigram_baseline, mine
from services.automation.process_log import ProcessLogError
from services.automation.sequences import episodes
from services.automation.state import FactStore
from services.automation.train import GRID, QUICK_GRID, fit_episodes, fit_process_log
from services.automation.validate import AutomationSpec, Validator
from simulator import SimConfig, Simulation

TAX_2017_HELPDESK = 0.712
EPISODE_NET = nets.NetConfig(hidden=32, use_time=False, epochs=12, batch_size=128, learning_rate=0.01, patience=3)
"""The suggestion model of the bench: a month of several tenants gives plenty of episodes (cheap epochs)."""
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "process_logs"


def process_log_section(data: Path, out: Path, quick: bool) -> dict[str, Any]:
    if not data.exists():
        print(f"process log: {data} not found, section skipped")
        return {"skipped": f"{data} not found"}
    print(f"process log: {data} ({'quick grid' if quick else 'full grid'})")
    result = fit_process_log(data, out, QUICK_GRID if quick else GRID)
    return {**result.__dict__, "published_tax2017": TAX_2017_HELPDESK if "helpdesk" in str(data).lower() or
            data.name == "process_logs" else None}


def _keys(patterns: list[MinedPattern]) -> list[Any]:
    return [new_envelope(p.tenant_id, pb.Suggestion(capability="automation", user_id=p.user_id, rule=pb.AutomationRule(
        trigger=f"{p.trigger_type} {p.condition}", actions=list(p.steps))), producer="bench") for p in patterns]


def planted_section(sim: Simulation, facts: FactStore, out: Path) -> tuple[dict[str, Any], Any]:
    tenants = facts.tenants()
    start = time.perf_counter()
    eps = [e for t in tenants for e in episodes(facts, t)]
    t_eps = time.perf_counter() - start
    start = time.perf_counter()
    mined = mine(eps)
    t_mine = time.perf_counter() - start
    start = time.perf_counter()
    model, info = fit_episodes(eps, out / "automation_next_action.onnx", EPISODE_NET)
    t_train = time.perf_counter() - start
    proposals = [p for t in tenants for p in propose(facts, t, model)]
    shown = [suggestion_envelope(record_of(p)) for p in proposals if p.shown]
    truth = sim.truth.workflows
    rows = {
        "suggestions (miner + model + validation)": score(truth, shown),
        "miner alone": score(truth, _keys(mined)),
        "frequent-bigram baseline": score(truth, _keys(bigram_baseline(eps))),
    }
    return {"episodes": len(eps), "episodes_seconds": t_eps, "mine_seconds": t_mine, "model_train_seconds": t_train,
            "model": info, "methods": rows,
            "templates": {p.candidate.suggestion_id: p.template.template.template_id if p.template.template else ""
                          for p in proposals}}, model


def unsafe_candidates(sim: Simulation, facts: FactStore) -> list[tuple[str, str, AutomationSpec]]:
    """(kind, expected rule, spec) built around each planted workflow's person."""
    out: list[tuple[str, str, AutomationSpec]] = []
    tenants = facts.tenants()
    for w in sim.truth.workflows:
        steps = truth_key(w)[4]
        tenant = facts.tenant(w.tenant_id)
        projects = tuple(w.trigger_project_ids)
        unseen = sorted(set(tenant.projects) - set(w.trigger_project_ids))
        other = next((t for t in tenants if t != w.tenant_id), "")
        foreign = sorted(facts.tenant(other).projects)[:1] if other else ["other-tenant-project"]
        verb = steps[0].split(":", 1)[0]
        out += [
            ("self-cycle", "cycle", AutomationSpec(w.tenant_id, w.user_id, "task_created", "",
                                                   ("create_subtask:template=release-checklist",), projects)),
            ("A->B->A cycle", "cycle", AutomationSpec(w.tenant_id, w.user_id, "task_created", "task_type=subtask",
                                                      ("move_item:group=done",), projects)),
            ("over-broad", "blast_radius", AutomationSpec(w.tenant_id, w.user_id, w.trigger_type, w.trigger_condition,
                                                          (*steps, f"{verb}:scope=project"), projects)),
            ("missing permission", "permission", AutomationSpec(w.tenant_id, w.user_id, w.trigger_type,
                                                                w.trigger_condition,
                                                                (*steps, "permission_change:role=admin"), projects)),
            ("cross-tenant", "cross_tenant", AutomationSpec(w.tenant_id, w.user_id, w.trigger_type, w.trigger_condition,
                                                            (*steps, f"move_item:project={foreign[0]}"), projects)),
        ]
        if unseen:
            out.append(("cross-project", "cross_project", AutomationSpec(
                w.tenant_id, w.user_id, w.trigger_type, w.trigger_condition, steps, (*projects, unseen[0]))))
    return out


def with_existing_loop(sim: Simulation, facts: FactStore) -> None:
    """Give each tenant an automation that closes the A->B->A loop: done -> create a follow-up subtask."""
    for tenant_id in facts.tenants():
        facts.apply([new_envelope(tenant_id, pb.AutomationCreated(
            automation_id=f"{tenant_id}-bench-followup", created_by="admin",
            trigger="task_status_changed to_status=TASK_STATUS_DONE", actions=["create_subtask:template=follow-up"]),
            producer="bench")])


def safety_section(sim: Simulation, facts: FactStore) -> dict[str, Any]:
    with_existing_loop(sim, facts)
    validator = Validator(facts)
    by_kind: dict[str, list[bool]] = {}
    latencies: list[float] = []
    failures = []
    for kind, rule, spec in unsafe_candidates(sim, facts):
        verdict = validator.validate(spec)
        latencies.append(verdict.seconds)
        right = (not verdict.ok) and rule in verdict.rules
        by_kind.setdefault(kind, []).append(right)
        if not right:
            failures.append({"kind": kind, "expected": rule, "got": sorted(verdict.rules), "spec": spec.__dict__})
    legit: list[dict[str, Any]] = []
    for w in sim.truth.workflows:
        key = truth_key(w)
        verdict = validator.validate(AutomationSpec(w.tenant_id, w.user_id, w.trigger_type, w.trigger_condition,
                                                    key[4], tuple(w.trigger_project_ids)))
        latencies.append(verdict.seconds)
        legit.append({"workflow_id": w.workflow_id, "ok": verdict.ok, "reasons": [r.message for r in verdict.reasons],
                      "dry_run_firings": verdict.dry_run.firings, "followed_by_hand": verdict.dry_run.followed_by_hand,
                      "peak_items_per_day": verdict.dry_run.peak_items_per_day})
    ms = sorted(x * 1000 for x in latencies)
    total = sum(len(v) for v in by_kind.values())
    return {"rejected_right_reason": sum(sum(v) for v in by_kind.values()) / total if total else 0.0,
            "candidates": total, "by_kind": {k: sum(v) / len(v) for k, v in by_kind.items()}, "failures": failures,
            "planted_passed": sum(x["ok"] for x in legit) / len(legit) if legit else 0.0, "planted": legit,
            "validation_ms": {"p50": statistics.median(ms), "p95": ms[int(0.95 * (len(ms) - 1))], "max": ms[-1],
                              "n": len(ms)}}


def _plot(payload: dict[str, Any]) -> Any:
    def draw(fig: Any) -> None:
        ax1, ax2 = fig.subplots(1, 2)
        pl = payload.get("process_log", {})
        if "test_accuracy" in pl:
            names = ["LSTM (ours)", "most frequent next", "Tax et al. 2017"]
            vals = [pl["test_accuracy"], pl["baseline_accuracy"], pl.get("published_tax2017") or 0.0]
            ax1.bar(names, vals, color=["tab:blue", "tab:gray", "tab:orange"])
            ax1.set_ylim(0, 1)
            ax1.set_title("next-activity accuracy, last third of cases")
        methods = payload["planted"]["methods"]
        xs = list(range(len(methods)))
        ax2.bar([x - 0.2 for x in xs], [m["recall"] for m in methods.values()], 0.4, label="recall")
        ax2.bar([x + 0.2 for x in xs], [m["precision"] for m in methods.values()], 0.4, label="precision")
        ax2.set_xticks(xs, [k.split(" (")[0] for k in methods], rotation=10)
        ax2.set_ylim(0, 1.05)
        ax2.legend()
        ax2.set_title("planted workflows")
    return draw


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench automation", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller world, smaller grid (a few minutes)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="process log folder or CSV file")
    parser.add_argument("--out", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("services.automation").setLevel(logging.INFO)
    import torch

    torch.set_num_threads(2)
    config = SimConfig(tenants=2, users_per_tenant=40, weeks=4, seed=11) if args.quick else \
        SimConfig(tenants=4, users_per_tenant=50, weeks=4, seed=11)
    payload: dict[str, Any] = {"quick": args.quick, "sim": config.__dict__ | {"start": config.start.isoformat()},
                               "machine": "shared 2-core machine (other helpers running)"}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            payload["process_log"] = process_log_section(args.data, Path(tmp), args.quick)
        except ProcessLogError as error:
            print(f"process log: {error}")
            payload["process_log"] = {"error": str(error)}
        print(f"simulating {config.tenants} tenants x {config.users_per_tenant} people x {config.weeks} weeks")
        sim = Simulation(config)
        facts = FactStore()
        events = list(sim.events())
        start = time.perf_counter()
        for i in range(0, len(events), 1000):
            facts.apply(events[i:i + 1000])
        payload["facts"] = {"events": len(events), "apply_seconds": time.perf_counter() - start}
        payload["planted"], _ = planted_section(sim, facts, Path(tmp))
    payload["safety"] = safety_section(sim, facts)
    rows = _rows(payload)
    write_report(args.out, "automation", payload, rows, ["section", "method", "metric", "value", "reference"],
                 _plot(payload))
    return 0


def _rows(payload: dict[str, Any]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    pl = payload["process_log"]
    if "test_accuracy" in pl:
        ref = f"Tax et al. 2017: {pl['published_tax2017']}" if pl.get("published_tax2017") else ""
        rows += [
            {"section": "process log", "method": f"LSTM h={pl['chosen']['hidden']} time={pl['chosen']['use_time']}",
             "metric": "accuracy (all prefixes)", "value": pl["test_accuracy"], "reference": ref},
            {"section": "process log", "method": "LSTM", "metric": "accuracy (prefixes >= 2)",
             "value": pl["test_accuracy_prefix2"], "reference": ref},
            {"section": "process log", "method": "most frequent next", "metric": "accuracy (all prefixes)",
             "value": pl["baseline_accuracy"], "reference": ""},
            {"section": "process log", "method": "most frequent next", "metric": "accuracy (prefixes >= 2)",
             "value": pl["baseline_accuracy_prefix2"], "reference": ""},
            {"section": "process log", "method": "ONNX vs torch", "metric": "max abs diff",
             "value": pl["onnx_max_abs_diff"], "reference": f"sizes {pl['onnx_sizes']}"},
        ]
    for name, m in payload["planted"]["methods"].items():
        rows += [{"section": "planted", "method": name, "metric": "recall", "value": m["recall"],
                  "reference": "goal >= 0.9"},
                 {"section": "planted", "method": name, "metric": "precision", "value": m["precision"],
                  "reference": f"goal >= 0.8 ({m['suggested']} suggested, {m['planted']} planted)"}]
    s = payload["safety"]
    rows += [{"section": "safety", "method": "validator", "metric": "unsafe rejected w/ right reason",
              "value": s["rejected_right_reason"], "reference": f"goal 1.0 ({s['candidates']} candidates)"},
             {"section": "safety", "method": "validator", "metric": "planted workflows passed",
              "value": s["planted_passed"], "reference": ""},
             {"section": "safety", "method": "validate + 4-week dry run", "metric": "latency p50 / p95 ms",
              "value": f"{s['validation_ms']['p50']:.1f} / {s['validation_ms']['p95']:.1f}", "reference": "one tenant"}]
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
