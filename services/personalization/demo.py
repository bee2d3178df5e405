"""The personalization part of the demo: the demo week's closed loop, the service's policy vs random and
popularity (and the oracle for scale). ``scripts/demo.py`` calls :func:`results`.

- ``target`` given (host:port of a running ``python -m services.personalization``, with ``settings`` naming
  its Kafka prefix and Redis): the service itself is in the loop (world events and feedback through Kafka,
  Recommend over gRPC; see :mod:`services.personalization.live`). Use a topic prefix of its own: the world is
  published progressively by the loop.
- otherwise: the service's policy (the hybrid) on the service's own code path, in process.
Random and popularity (and the oracle) always run in process on the same requests and the same dice.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from services.personalization.simulate import LoopConfig, PolicyRun, build_world, gap_closed, run_policy

if TYPE_CHECKING:
    from mesh.config import MeshSettings


def results(users: int = 300, weeks: int = 1, seed: int = 7, *, settings: MeshSettings | None = None,
            target: str | None = None, progress: bool = True) -> dict[str, Any]:
    """CTR (mean true click probability of what was shown) of the service's policy, random, popularity and
    the oracle over the demo's simulated world (same users, weeks and seed as the demo's simulator run;
    the first day is history only)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cfg = LoopConfig(users=users, weeks=weeks, warmup_weeks=0, seed=seed)
    world = build_world(cfg)
    say = (lambda m: print(f"[personalization] {m}", flush=True)) if progress else None
    runs: dict[str, PolicyRun] = {}
    if target is not None:
        from mesh.config import MeshSettings as Settings
        from services.personalization.live import live_closed_loop

        runs["service"] = live_closed_loop(settings or Settings(), target, cfg, world=world, progress=say)
    else:
        runs["service"] = run_policy(world, "hybrid", cfg, say)
    for name in ("popularity", "random", "oracle"):
        runs[name] = run_policy(world, name, cfg, say)
    return {"policy": "hybrid (LinUCB over ALS + content)", "mode": "live service" if target else "in process",
            "ctr": {name: round(run.ctr, 4) for name, run in runs.items()},
            "shown": {name: run.shown for name, run in runs.items()},
            "clicks": {name: run.clicks for name, run in runs.items()},
            "regret_vs_oracle": {name: round(run.oracle_clicks - run.expected_clicks, 1) for name, run in runs.items()},
            "service_gap_closed_popularity_to_oracle": round(gap_closed(runs, "service"), 3)}


if __name__ == "__main__":
    import json

    print(json.dumps(results(users=60), indent=2))
