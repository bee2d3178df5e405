"""One run: simulate, send every envelope to the sinks (optionally paced), write the truth and a manifest."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from mesh.events import occurred_at
from simulator._clock import HOUR
from simulator._config import SimConfig
from simulator._simulation import Simulation
from simulator._sinks import EventSink, TokenBucket, throttle

_PROGRESS_EVERY = 2000


@dataclass(frozen=True)
class RunReport:
    events: int
    seconds: float
    events_per_s: float
    by_type: dict[str, int]
    truth_dir: str


def run(config: SimConfig, out: Path | str, sinks: Sequence[EventSink], *, rate: float | None = None,
        progress: bool = False) -> RunReport:
    """Stream ``config``'s world into ``sinks``; truth to ``<out>/truth``, summary to ``<out>/manifest.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim = Simulation(config)
    bucket = TokenBucket(rate) if rate else None
    counts: Counter[str] = Counter()
    total_h = (sim.world.horizon - sim.world.t0) / HOUR
    bar = tqdm(total=round(total_h), unit="sim h", disable=not progress, dynamic_ncols=True)
    started = time.perf_counter()
    done_h = 0
    try:
        for n, env in enumerate(throttle(sim.events(), bucket), 1):
            for sink in sinks:
                sink.write(env)
            counts[env.type] += 1
            if n % _PROGRESS_EVERY == 0:
                now_h = int((occurred_at(env).timestamp() - sim.world.t0) // HOUR)
                bar.update(max(0, now_h - done_h))
                done_h = max(done_h, now_h)
                bar.set_postfix(events=n, refresh=False)
    finally:
        for sink in sinks:
            sink.close()
    seconds = time.perf_counter() - started
    bar.update(max(0, round(total_h) - done_h))
    bar.close()
    sim.truth.write(out / "truth")
    total = sum(counts.values())
    report = RunReport(total, seconds, total / seconds if seconds > 0 else 0.0, dict(sorted(counts.items())),
                       str(out / "truth"))
    manifest = {"config": {**asdict(config), "start": config.start.isoformat()}, "report": asdict(report)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return report
