"""The personalization part of the demo: the demo week's closed loop, the service's policy (the hybrid) vs
random and popularity (and the oracle for scale), on the service's own code path (recommender, reducers,
feedback events) in process. ``scripts/demo.py`` calls :func:`results`."""

from __future__ import annotations

import os
from typing import Any

from services.personalization.simulate import LoopConfig, closed_loop, gap_closed


def results(users: int = 300, weeks: int = 1, seed: int = 7, *, progress: bool = True) -> dict[str, Any]:
    """CTR (mean true click probability of what was shown) of hybrid, random, popularity and oracle over
    the demo's simulated world (same users, weeks and seed as the demo's simulator run); the first day
    is history only (no ALS before anyone viewed anything)."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    cfg = LoopConfig(users=users, weeks=weeks, warmup_weeks=0, seed=seed)
    runs = closed_loop(cfg, ("hybrid", "popularity", "random", "oracle"),
                       progress=(lambda m: print(f"[personalization] {m}", flush=True)) if progress else None)
    return {"policy": "hybrid (LinUCB over ALS + content)",
            "ctr": {name: round(run.ctr, 4) for name, run in runs.items()},
            "recommendations": runs["hybrid"].shown // cfg.k, "shown": runs["hybrid"].shown,
            "clicks": {name: run.clicks for name, run in runs.items()},
            "regret_vs_oracle": {name: round(run.cumulative_regret[-1], 1) for name, run in runs.items()},
            "hybrid_gap_closed_popularity_to_oracle": round(gap_closed(runs), 3)}


if __name__ == "__main__":
    import json

    print(json.dumps(results(users=60), indent=2))
