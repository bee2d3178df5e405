"""Feature store benchmark: online read latency (batch 1 and 64) from the real Redis store, and the
replay time of a simulated week into a fresh store.

The client's read (`get_online`, via the provider's `online_read`) is measured next to Feast's public
`get_online_features` + `to_dict` on the same keys (the "reference"), so what the client's fast path saves
stays visible.

`python -m bench features [--quick] [--users N] [--weeks N] [--reads N] --out DIR` -> DIR/features.json
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._report import write_report
from mesh.config import MeshSettings
from mesh.events import Envelope


def _events(users: int, weeks: int, seed: int) -> tuple[list[Envelope], str]:
    try:
        from simulator import SimConfig, Simulation
    except ImportError:  # pragma: no cover - simulator/ is part of the repo; kept for partial checkouts
        raise SystemExit("simulator/ is needed for the replay stream") from None
    sim = Simulation(SimConfig(tenants=1, users_per_tenant=users, weeks=weeks, seed=seed))
    return list(sim.events()), f"simulator: 1 tenant, {users} users, {weeks} week(s), seed {seed}"


def _percentiles(samples_s: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"p50": round(q[49], 4), "p99": round(q[98], 4), "mean": round(statistics.fmean(ms), 4), "n": len(ms)}


def _read_latency(readers: dict[str, Callable[[list[str]], object]], keys: list[str], batch: int,
                  reads: int) -> dict[str, dict[str, float]]:
    """Each reader on the same chunks, alternating read by read (load from elsewhere hits them alike)."""
    samples: dict[str, list[float]] = {name: [] for name in readers}
    for i in range(reads + 50):
        start = (i * batch) % max(1, len(keys) - batch)
        chunk = keys[start: start + batch]
        for name, read in readers.items():
            t = time.perf_counter()
            read(chunk)
            if i >= 50:  # warm-up
                samples[name].append(time.perf_counter() - t)
    return {name: _percentiles(s) for name, s in samples.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench features", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer users and reads (under 2 minutes)")
    p.add_argument("--users", type=int, default=None, help="users in the simulated tenant (default 300, quick 60)")
    p.add_argument("--weeks", type=int, default=1)
    p.add_argument("--reads", type=int, default=None, help="timed reads per batch size (default 2000, quick 300)")
    p.add_argument("--batch", type=int, default=500, help="replay batch size (events per transaction)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=Path("out/bench"))
    args = p.parse_args(argv)
    users = args.users or (60 if args.quick else 300)
    reads = args.reads or (300 if args.quick else 2000)

    from mesh.features import USER_VIEW, FeatureRepo, FeatureRepoConfig, build_ingestor, replay

    t = time.perf_counter()
    events, source = _events(users, args.weeks, args.seed)
    sim_s = time.perf_counter() - t
    print(f"{len(events)} events from {source} in {sim_s:.1f}s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    repo = FeatureRepo(FeatureRepoConfig(f"bench_{uuid.uuid4().hex[:8]}", tmp / "repo", tmp / "offline", "redis",
                                         MeshSettings().redis.url))
    repo.apply()
    ingestor = build_ingestor(repo)
    try:
        stats = replay(ingestor, events, batch_size=args.batch, log=True)
        print(f"replay: {stats.events} events in {stats.seconds:.1f}s ({stats.events_per_s:.0f} events/s)")
        keys = [f"{events[0].tenant_id}:{k.rsplit(':', 1)[1]}" for k in ingestor.aggregates.keys("user")]
        store = repo.store()

        def reference(chunk: list[str]) -> object:
            return store.get_online_features(features=USER_VIEW.feature_refs(),
                                             entity_rows=[{USER_VIEW.join_key: k} for k in chunk]).to_dict(True)

        def client_read(chunk: list[str]) -> object:
            return ingestor.client.get_online(USER_VIEW, chunk)

        readers: dict[str, Callable[[list[str]], object]] = {"": client_read, "reference_": reference}
        lat = {f"{name}batch{b}": p for b in (1, 64)
               for name, p in _read_latency(readers, keys, b, reads).items()}
    finally:
        ingestor.aggregates.clear()  # type: ignore[attr-defined]
        repo.store().teardown()
    rows = [{"measure": f"online read{label}, batch {b}", "p50_ms": lat[f"{prefix}batch{b}"]["p50"],
             "p99_ms": lat[f"{prefix}batch{b}"]["p99"], "n": lat[f"{prefix}batch{b}"]["n"]}
            for b in (1, 64) for prefix, label in (("", ""), ("reference_", " (feast get_online_features)"))]
    rows.append({"measure": f"replay {stats.events} events (batch {args.batch})", "p50_ms": None, "p99_ms": None,
                 "n": f"{stats.seconds:.1f}s, {stats.events_per_s:.0f} ev/s"})
    payload = {
        "online_read_ms": lat, "store": "redis (Feast 0.67, skip_dedup; aggregates in Redis)",
        "users": len(keys), "replay": {"events": stats.events, "seconds": round(stats.seconds, 3),
                                       "events_per_s": round(stats.events_per_s, 1), "batch_size": args.batch,
                                       "rows_pushed": stats.rows_pushed, "source": source},
        "quick": args.quick,
    }
    write_report(args.out, "features", payload, rows, ["measure", "p50_ms", "p99_ms", "n"],
                 lambda fig: _plot(fig, lat))
    return 0


def _plot(fig: Any, lat: dict[str, dict[str, float]]) -> None:
    """p50 and p99 of the mesh client next to Feast's own read path, batch 1 and 64."""
    for i, b in enumerate((1, 64)):
        ax = fig.add_subplot(1, 2, i + 1)
        names = ["mesh FeatureClient", "feast get_online_features"]
        keys = [f"batch{b}", f"reference_batch{b}"]
        x = range(len(names))
        ax.bar([v - 0.2 for v in x], [lat[k]["p50"] for k in keys], width=0.4, label="p50")
        ax.bar([v + 0.2 for v in x], [lat[k]["p99"] for k in keys], width=0.4, label="p99")
        ax.set_xticks(list(x), names)
        ax.set_ylabel("ms (lower is better)")
        ax.set_title(f"online read, batch of {b} entities (Redis)")
        ax.legend()


if __name__ == "__main__":
    raise SystemExit(main())
