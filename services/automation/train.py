"""Training of the next-action model (torch is imported here, never by serving):

- on a real process log (:func:`fit_process_log`): hyper-parameters chosen on the validation slice of the
  first two thirds of cases, accuracy on the last third beside the most-frequent-next baseline;
- on the mesh's episodes (:func:`fit_episodes`): token sequences ``[trigger, step, ..., <end>]``, the model
  that must support a mined pattern before it is suggested.

Both export to ONNX and verify ONNX Runtime == torch at three (batch, sequence) sizes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.automation import nets
from services.automation.engine import MODEL_NAME
from services.automation.model import SCHEMA, NextActionModel, save_vocabulary
from services.automation.process_log import (
    END_TOKEN,
    N_TIME_FEATURES,
    Vocabulary,
    most_frequent_next,
    pad,
    prefixes,
    read_cases,
    split_cases,
)
from services.automation.sequences import Episode, episodes_of
from services.automation.state import EVENT_TYPES

log = logging.getLogger(__name__)

GRID: tuple[nets.NetConfig, ...] = (
    nets.NetConfig(hidden=32), nets.NetConfig(hidden=64), nets.NetConfig(hidden=128),
    nets.NetConfig(hidden=64, use_time=False), nets.NetConfig(hidden=64, layers=2, dropout=0.2),
)
QUICK_GRID: tuple[nets.NetConfig, ...] = (nets.NetConfig(hidden=64), nets.NetConfig(hidden=64, use_time=False))


@dataclass
class ProcessLogResult:
    data: str
    cases: dict[str, int]
    prefixes: dict[str, int]
    candidates: list[dict[str, object]] = field(default_factory=list)
    chosen: dict[str, object] = field(default_factory=dict)
    test_accuracy: float = 0.0
    test_accuracy_prefix2: float = 0.0
    baseline_accuracy: float = 0.0
    baseline_accuracy_prefix2: float = 0.0
    onnx_max_abs_diff: float = 0.0
    onnx_sizes: list[list[int]] = field(default_factory=list)
    train_seconds: float = 0.0


def fit_process_log(path: Path, out: Path, grid: Sequence[nets.NetConfig] = GRID, seed: int = 0
                    ) -> ProcessLogResult:
    """Choose on validation, score on test (last third of cases by time), export and verify."""
    split = split_cases(read_cases(path))
    vocab = Vocabulary.build([c.activities for c in split.train + split.val])
    tr, va, te = (prefixes(x, vocab) for x in (split.train, split.val, split.test))
    result = ProcessLogResult(str(path), {"train": len(split.train), "val": len(split.val), "test": len(split.test)},
                              {"train": len(tr), "val": len(va), "test": len(te)})
    start = time.perf_counter()
    best: tuple[float, nets.NetConfig, nets.NextActionNet] | None = None
    for config in grid:
        candidate, val_acc = nets.train(vocab.size, tr, va, config, seed)
        log.info("process log: %s -> validation accuracy %.4f", config, val_acc)
        result.candidates.append({**config.__dict__, "val_accuracy": val_acc})
        if best is None or val_acc > best[0]:
            best = (val_acc, config, candidate)
    if best is None:
        raise ValueError("empty hyper-parameter grid")
    net = best[2]  # the test period is scored once, with the net chosen on validation
    result.train_seconds = time.perf_counter() - start
    result.chosen = {**best[1].__dict__, "val_accuracy": best[0]}
    hit = nets.predict(net, te) == te.targets
    result.test_accuracy = float(hit.mean())
    result.test_accuracy_prefix2 = float(hit[te.lengths >= 2].mean())
    table = most_frequent_next(tr, vocab.size)
    base = table[te.activities[:, -1]] == te.targets
    result.baseline_accuracy = float(base.mean())
    result.baseline_accuracy_prefix2 = float(base[te.lengths >= 2].mean())
    report = nets.export(net, out / "process_log_next_action.onnx")
    result.onnx_max_abs_diff = max(c.max_abs_diff for c in report.checks)
    result.onnx_sizes = [list(c.input_shapes["activities"]) for c in report.checks]
    return result


def episode_items(episodes: Sequence[Episode], vocab: Vocabulary
                  ) -> list[tuple[list[int], np.ndarray[tuple[int, int], np.dtype[np.float32]], int]]:
    """Every prefix of ``[trigger, steps..., <end>]`` of the episodes that have steps."""
    items = []
    for ep in episodes:
        if not ep.steps:
            continue
        ids = [vocab.id(t) for t in (ep.trigger_token, *ep.steps, END_TOKEN)]
        for k in range(1, len(ids)):
            items.append((ids[:k], np.zeros((k, N_TIME_FEATURES), np.float32), ids[k]))
    return items


def fit_episodes(episodes: Sequence[Episode], path: Path, config: nets.NetConfig | None = None,
                 seed: int = 0) -> tuple[NextActionModel, dict[str, float]]:
    """Train on the episodes (the newest fifth by trigger time for early stopping), export, verify."""
    ordered = sorted((e for e in episodes if e.steps), key=lambda e: (e.at, e.user_id, e.condition))
    if len(ordered) < 10:
        raise ValueError(f"too few episodes with steps to train on ({len(ordered)})")
    vocab = Vocabulary.build([(e.trigger_token, *e.steps) for e in ordered])
    cut = int(len(ordered) * 0.8)
    tr, va = pad(episode_items(ordered[:cut], vocab)), pad(episode_items(ordered[cut:], vocab))
    config = config or nets.NetConfig(hidden=64, use_time=False, epochs=60, batch_size=32, patience=10)
    net, val_acc = nets.train(vocab.size, tr, va, config, seed)
    report = nets.export(net, path)
    save_vocabulary(path, vocab)
    return NextActionModel.load(path), {"val_accuracy": val_acc,
                                        "onnx_max_abs_diff": max(c.max_abs_diff for c in report.checks)}


def next_step_accuracy(model: NextActionModel, held_out: Sequence[Episode]) -> float:
    """Top-1 accuracy of the follow-up steps (and the end) of the held-out episodes."""
    prefixes_, targets = [], []
    for ep in held_out:
        seq = (ep.trigger_token, *ep.steps, END_TOKEN)
        for k in range(2, len(seq)):
            prefixes_.append(list(seq[:k]))
            targets.append(model.token_id(seq[k]))
    if not prefixes_:
        return 0.0
    return float(np.mean(model.probabilities(prefixes_).argmax(axis=1) == np.asarray(targets)))


def main(argv: list[str] | None = None) -> int:
    """``python -m services.automation.train``: episodes -> next-action model -> registered challenger,
    promoted to champion when its follow-up accuracy on the newest fifth of episodes is better."""
    import argparse

    from mesh.config import MeshSettings
    from mesh.models import (
        Challenger,
        ModelRegistry,
        Objective,
        add_training_arguments,
        logged_training_events,
        output_dir,
        register_and_promote,
        source_of,
    )

    parser = argparse.ArgumentParser(prog="python -m services.automation.train", description=main.__doc__)
    add_training_arguments(parser, tenants=2, users=40, weeks=4, seed=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = MeshSettings()
    if source_of(args) == "simulator":
        from simulator import SimConfig, Simulation

        events = list(Simulation(SimConfig(tenants=args.tenants, users_per_tenant=args.users, weeks=args.weeks,
                                           seed=args.seed)).events())
    else:
        events = logged_training_events(args, settings, EVENT_TYPES)
    eps = sorted((e for e in episodes_of(events) if e.steps), key=lambda e: e.at)
    path = output_dir(args, "automation-") / "automation_next_action.onnx"
    model, info = fit_episodes(eps, path)
    held_out = eps[int(len(eps) * 0.8):]
    accuracy = next_step_accuracy(model, held_out)
    log.info("automation next-action: follow-up accuracy %.3f on %d held-out episodes; %s", accuracy,
             len(held_out), info)
    if args.no_register:
        return 0
    from datetime import UTC, datetime

    times = (datetime.fromtimestamp(eps[0].at, UTC), datetime.fromtimestamp(eps[-1].at, UTC))
    decision = register_and_promote(
        ModelRegistry(settings.models),
        Challenger(MODEL_NAME, path, SCHEMA, {"follow_up_accuracy": accuracy, **info}, {"episodes": len(eps)}, times),
        Objective("follow_up_accuracy", True, lambda v: next_step_accuracy(NextActionModel(v.model), held_out)),
        settings.models)
    log.info("automation next-action: %s", decision)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
